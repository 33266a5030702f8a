"""What a run reports at its end (`--report FILE.json`, and the summary printed after the run).

Read from the stats files each process wrote, so a part that restarted is counted across its
instances (`Child.stuck_before`), and what the recording holds of each part stands beside what it
played.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from launcher.supervisor import Launcher


def run_report(launcher: Launcher) -> dict[str, Any]:
    """The run's report: per part (notes, lateness, sync, restarts, stuck notes) and overall."""
    parts: dict[str, Any] = {}
    cond = next((c.read_stats() for c in launcher.children if c.role == "conductor"), {})
    stuck = 0
    for c in launcher.children:
        if c.role != "agent":
            continue
        s = c.read_stats()
        sounding = int(s.get("sounding", 0)) if c.alive else 0
        stuck += c.stuck_before + int(s.get("stuck_notes", 0)) + sounding
        parts[c.name] = {
            "role": "agent",
            "notes": int(s.get("notes", 0)),
            "late_notes": int(s.get("late_notes", 0)),
            # notes left out because they could only have started 0.25 s late or more
            "dropped_late": int(s.get("dropped_late", 0)),
            "timing_ms": s.get("timing_ms", {"p50": 0.0, "p99": 0.0, "max": 0.0}),
            # sync.state: synced, unsynced (no pong for 2 s: its clock is unchecked) or syncing
            "sync": s.get("sync", {"offset_ms": 0.0, "rtt_ms": 0.0, "state": "unknown"}),
            "invalid_messages": int(s.get("invalid_messages", 0)),
            "restarts": c.restarts,
            "priority": s.get("priority", "none"),
            "stuck_notes": c.stuck_before + int(s.get("stuck_notes", 0)),
        }
        if s.get("engine") == "onnx":
            # the model's own account: events drawn, re-plans, beats it had not drawn when they were
            # due (the part played only their chords), others' notes heard after their turn
            parts[c.name]["model"] = {k: s.get(k, 0) for k in ("model_events", "replans", "behind_beats",
                                                              "late_heard", "providers")}
        if cond:
            # What the recording holds of this part (every note it committed), beside what it
            # played: equal unless notes were lost on the way (the agent sends unacknowledged ones
            # again, agents/unacked.py) or a stall left some out (`dropped_late`).
            parts[c.name]["recorded"] = int((cond.get("recorded") or {}).get(c.name, 0))
            # bars it rested while the player had its part (docs/roles.md)
            parts[c.name]["yielded_bars"] = int(((cond.get("roles") or {}).get("yielded_bars") or {})
                                                .get(c.name, 0))
    if launcher.ens.human is not None and cond:
        parts[launcher.ens.human.name] = {
            "role": "human",
            "notes": int(cond.get("human_notes", 0)),
            "recorded": int((cond.get("recorded") or {}).get(launcher.ens.human.name, 0)),
            "late_notes": 0,
            "dropped_late": 0,
            "timing_ms": {"p50": 0.0, "p99": 0.0, "max": 0.0},
            "sync": {"offset_ms": 0.0, "rtt_ms": 0.0},
            "invalid_messages": 0,
            "restarts": 0,
        }
    # the shared model processes (engine.share): whom each serves, how well its calls batched, its memory
    models = {c.name: {**{k: v for k, v in c.read_stats().items() if k != "agents"}, "restarts": c.restarts}
              for c in launcher.children if c.role == "model"}
    outputs = next(({**c.read_stats(), "restarts": c.restarts}
                    for c in launcher.children if c.role == "outputs"), None)
    return {
        "ensemble": launcher.ens.name,
        "bus": launcher.ens.bus.transport,
        "bars": launcher.args.bars,
        "duration_s": round(time.monotonic() - launcher.t0, 3),
        "ended_by": launcher.ended_by,
        "stuck_notes": stuck,
        # Agents out of sync at the end: playing on a clock no pong has checked (docs/multihost.md).
        "unsynced": sorted(n for n, p in parts.items() if p["sync"].get("state") == "unsynced"),
        "parts": parts,
        **({"model_processes": models} if models else {}),
        # the output process that wrote this host's parts (timing.output_host): its priority, its parts
        **({"output_process": outputs} if outputs else {}),
        "conductor": {
            **{
                k: cond.get(k)
                for k in ("invalid_messages", "invalid_reasons", "refused", "recorded", "tempo", "bar",
                          "roles")
            },
            "restarts": sum(c.restarts for c in launcher.children if c.role == "conductor"),
        }
        if cond
        else {},
    }


def print_summary(report: dict[str, Any]) -> None:
    print(
        f"{report['ensemble']}: {report['duration_s']:.1f} s on the {report['bus']} bus, "
        f"stuck notes {report['stuck_notes']}"
    )
    for name, p in report["parts"].items():
        t = p["timing_ms"]
        print(
            f"  {name:<10} {p['role']:<6} notes {p['notes']:>5}  late {p['late_notes']:>3}  "
            f"timing p50 {t['p50']:.3f} p99 {t['p99']:.3f} max {t['max']:.3f} ms  restarts {p['restarts']}"
            + (f"  left out late {p['dropped_late']}" if p.get("dropped_late") else "")
            + (f"  model behind {p['model']['behind_beats']} beats" if (p.get("model") or {}).get(
                "behind_beats") else "")
        )
