"""Observability as code: alert rules, their promtool tests, runbooks and dashboards.

One data file (``templates/observability.yml``) holds every threshold, selector,
severity and ``for`` duration; Jinja2 templates under ``templates/`` turn it into
``alerts/``, ``docs/runbooks/`` and (through :mod:`memops.render.dashboards`)
``dashboards/``. ``invoke render`` drives :mod:`memops.render.driver`.
"""
