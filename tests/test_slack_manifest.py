"""The manifest against the code: every listener the app registers is subscribed in manifest.json (and the
README's copy, kept identical by tests/test_setup.py), with the scopes it needs, and the reverse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import handlers
from ringkas.config import Settings

ROOT = Path(__file__).resolve().parents[1]
# Event type -> the bot events that deliver it, and the scopes reading it needs.
EVENTS = {
    "app_mention": ({"app_mention"}, {"app_mentions:read"}),
    "message": ({"message.channels", "message.groups", "message.im", "message.mpim"},
                {"channels:history", "groups:history", "im:history", "mpim:history"}),
    "reaction_added": ({"reaction_added"}, {"reactions:read"}),
    "link_shared": ({"link_shared"}, {"links:read", "links:write"}),
    "app_home_opened": ({"app_home_opened"}, set()),
}
# Web API methods the handlers call -> the scope each needs.
METHOD_SCOPES = {"chat.postMessage": "chat:write", "reactions.add": "reactions:write",
                 "chat.unfurl": "links:write", "conversations.history": "channels:history"}


class Recorder:
    """Stands in for Bolt's app: records what each handler module registers."""

    def __init__(self) -> None:
        self.seen: dict[str, set[str]] = {kind: set() for kind in ("event", "command", "shortcut", "action",
                                                                   "view")}

    def _record(self, kind: str, key: Any) -> Any:
        self.seen[kind].add(key if isinstance(key, str) else json.dumps(key, sort_keys=True, default=str))
        return lambda function: function

    def event(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self._record("event", key)

    def command(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self._record("command", key)

    def shortcut(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self._record("shortcut", key)

    def action(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self._record("action", key)

    def view(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self._record("view", key)


def registered() -> dict[str, set[str]]:
    from handlers.deps import Deps

    recorder = Recorder()
    handlers.register(recorder, Deps(settings=Settings(), ringkas=None, state=None))  # type: ignore[arg-type]
    return recorder.seen


def manifest() -> dict[str, Any]:
    return json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))


def test_every_registered_event_is_subscribed_with_its_scopes_and_the_reverse() -> None:
    seen, app = registered(), manifest()
    subscribed = set(app["settings"]["event_subscriptions"]["bot_events"])
    scopes = set(app["oauth_config"]["scopes"]["bot"])
    for event in seen["event"]:
        assert event in EVENTS, f"handler for {event!r}: add it to EVENTS in this test and to the manifest"
        bot_events, needed = EVENTS[event]
        assert bot_events <= subscribed, f"{event} handled but not subscribed in manifest.json"
        assert needed <= scopes, f"{event} handled but the manifest lacks {needed - scopes}"
    delivered = set().union(*(EVENTS[e][0] for e in seen["event"]))
    assert subscribed <= delivered, f"manifest subscribes to {subscribed - delivered} with no handler"
    assert {METHOD_SCOPES[m] for m in METHOD_SCOPES} <= scopes


def test_every_command_and_shortcut_is_in_the_manifest_and_the_reverse() -> None:
    seen, app = registered(), manifest()
    commands = {c["command"] for c in app["features"]["slash_commands"]}
    assert seen["command"] == commands
    shortcuts = {s["callback_id"] for s in app["features"].get("shortcuts", [])}
    assert seen["shortcut"] == shortcuts
    assert "commands" in app["oauth_config"]["scopes"]["bot"]
    if seen["shortcut"] or seen["action"] or seen["view"]:
        assert app["settings"]["interactivity"]["is_enabled"] is True


def test_home_tab_matches_its_handler() -> None:
    seen, app = registered(), manifest()
    home = bool(app["features"]["app_home"].get("home_tab_enabled"))
    assert home == ("app_home_opened" in seen["event"])


def test_unfurl_domains_only_with_the_link_shared_handler() -> None:
    seen, app = registered(), manifest()
    assert bool(app["features"].get("unfurl_domains")) == ("link_shared" in seen["event"])


def test_the_readme_copy_is_the_manifest() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8").split("## Create the Slack app", 1)[1]
    assert json.loads(readme.split("```json", 1)[1].split("```", 1)[0]) == manifest()
