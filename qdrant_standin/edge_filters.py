"""Qdrant's REST ``Filter`` (as qdrant-client models) -> qdrant-edge's ``Filter``.

Every condition of the REST filter has an edge counterpart, so edge evaluates
filters itself, with the collection's payload indexes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import qdrant_edge as edge
from qdrant_client.http import models

from qdrant_standin.edge_points import point_id
from qdrant_standin.protocol import wrong_input


def edge_filter(rest: models.Filter | None) -> edge.Filter | None:
    if rest is None:
        return None
    min_should = None
    if rest.min_should is not None:
        min_should = edge.MinShould(
            [_condition(item) for item in rest.min_should.conditions], rest.min_should.min_count
        )
    return edge.Filter(
        must=_conditions(rest.must),
        should=_conditions(rest.should),
        must_not=_conditions(rest.must_not),
        min_should=min_should,
    )


def _conditions(value: Any) -> list[Any] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    return [_condition(item) for item in items]


def _condition(rest: Any) -> Any:
    if isinstance(rest, models.FieldCondition):
        return _field(rest)
    if isinstance(rest, models.Filter):
        return edge_filter(rest)
    if isinstance(rest, models.IsEmptyCondition):
        return edge.IsEmptyCondition(rest.is_empty.key)
    if isinstance(rest, models.IsNullCondition):
        return edge.IsNullCondition(rest.is_null.key)
    if isinstance(rest, models.HasIdCondition):
        return edge.HasIdCondition({point_id(item) for item in rest.has_id})
    if isinstance(rest, models.HasVectorCondition):
        return edge.HasVectorCondition(rest.has_vector)
    if isinstance(rest, models.NestedCondition):
        return edge.NestedCondition(rest.nested.key, edge_filter(rest.nested.filter))
    raise wrong_input(f"filter condition {type(rest).__name__} is not supported by the stand-in")


def _field(rest: models.FieldCondition) -> edge.FieldCondition:
    return edge.FieldCondition(
        rest.key,
        match=_match(rest.match),
        range=_range(rest.range),
        geo_bounding_box=_bounding_box(rest.geo_bounding_box),
        geo_radius=_radius(rest.geo_radius),
        geo_polygon=_polygon(rest.geo_polygon),
        values_count=_values_count(rest.values_count),
        is_empty=rest.is_empty,
        is_null=rest.is_null,
    )


def _match(rest: Any) -> Any:
    if rest is None:
        return None
    simple = {
        models.MatchValue: lambda m: edge.MatchValue(m.value),
        models.MatchText: lambda m: edge.MatchText(m.text),
        models.MatchTextAny: lambda m: edge.MatchTextAny(m.text_any),
        models.MatchPhrase: lambda m: edge.MatchPhrase(m.phrase),
        models.MatchPrefix: lambda m: edge.MatchPrefix(m.prefix),
        models.MatchSubstring: lambda m: edge.MatchSubstring(m.substring),
        models.MatchAny: lambda m: edge.MatchAny(list(m.any)),
        models.MatchExcept: lambda m: edge.MatchExcept(list(m.except_)),
    }
    convert = simple.get(type(rest))
    if convert is None:
        raise wrong_input(f"match {type(rest).__name__} is not supported by the stand-in")
    return convert(rest)


def _range(rest: models.Range | models.DatetimeRange | None) -> Any:
    if rest is None:
        return None
    if isinstance(rest, models.Range):
        return edge.RangeFloat(gte=rest.gte, gt=rest.gt, lte=rest.lte, lt=rest.lt)
    bounds = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name in ("gte", "gt", "lte", "lt")
        if (value := getattr(rest, name)) is not None
    }
    return edge.RangeDateTime(**bounds)


def _geo_point(rest: models.GeoPoint) -> edge.GeoPoint:
    return edge.GeoPoint(lon=rest.lon, lat=rest.lat)


def _bounding_box(rest: models.GeoBoundingBox | None) -> edge.GeoBoundingBox | None:
    if rest is None:
        return None
    return edge.GeoBoundingBox(_geo_point(rest.top_left), _geo_point(rest.bottom_right))


def _radius(rest: models.GeoRadius | None) -> edge.GeoRadius | None:
    if rest is None:
        return None
    return edge.GeoRadius(_geo_point(rest.center), rest.radius)


def _polygon(rest: models.GeoPolygon | None) -> edge.GeoPolygon | None:
    if rest is None:
        return None
    interiors = None
    if rest.interiors:
        interiors = [[_geo_point(p) for p in ring.points] for ring in rest.interiors]
    return edge.GeoPolygon([_geo_point(p) for p in rest.exterior.points], interiors)


def _values_count(rest: models.ValuesCount | None) -> edge.ValuesCount | None:
    if rest is None:
        return None
    return edge.ValuesCount(lt=rest.lt, gt=rest.gt, lte=rest.lte, gte=rest.gte)
