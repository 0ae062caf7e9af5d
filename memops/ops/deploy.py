"""`invoke deploy`: run playbooks/deploy.yml; every role ends with its health probe."""

from __future__ import annotations

from typing import Any

from memops.deploy.playbook import PlaybookOptions, PlaybookResult, run_playbook
from memops.deploy.playbook_tags import known_tags
from memops.exitcodes import EXIT_FAILED, EXIT_OK
from memops.ops import options
from memops.ops.runner import Context, Operation, Outcome


def deploy(
    context: Context,
    *,
    limit: str,
    tags: tuple[str, ...],
    check: bool,
    diff: bool,
    full: bool = False,
) -> Outcome:
    """Run the deploy playbook.

    A component whose deploy fingerprint matches its last healthy deploy (same settings, same
    memops code, its files as left) is only probed; ``full`` runs every task regardless.
    """
    inventory = context.require_inventory()
    extra_vars = {"memops_service_fingerprint_enabled": False} if full else {}
    playbook_options = PlaybookOptions(
        limit=limit, tags=",".join(tags), check=check, diff=diff, extra_vars=extra_vars
    )
    result = run_playbook("deploy", inventory, playbook_options, echo=context.echo)
    return deploy_outcome(inventory.name, result, check=check)


def deploy_outcome(inventory_name: str, result: PlaybookResult, *, check: bool) -> Outcome:
    document: dict[str, Any] = {
        **result.to_dict(),
        "check": check,
        "error": result.error_line or None,
        "inventory": inventory_name,
    }
    audit = {"changed": result.changed, "error": result.error_line, "log": str(result.log_file)}
    if not result.ok:
        return Outcome(EXIT_FAILED, document, error=result.error_line, audit=audit)
    mode = " (check mode: nothing was changed)" if check else ""
    line = (
        f"deploy ok on inventory {inventory_name}: "
        f"{result.changed} changed{mode} in {result.duration_s:.1f}s"
    )
    return Outcome(EXIT_OK, document, lines=[line], audit=audit)


DEPLOY = Operation(
    "deploy",
    deploy,
    {
        "limit": options.described(
            options.text(forbid=" "), "only these hosts or groups (ansible --limit)"
        ),
        "tags": options.described(
            options.choices(lambda: known_tags("deploy"), many=True),
            "only these tags, comma-separated: redis, postgresql, qdrant, monitoring, …",
        ),
        "check": options.described(
            options.flag(), "dry run: report what would change, change nothing"
        ),
        "diff": options.described(options.flag(), "show file differences"),
        "full": options.described(
            options.flag(),
            "run every task, also for components unchanged since their last healthy deploy",
        ),
    },
    locks=True,
)
