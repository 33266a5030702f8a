"""`--render` and `--plot`: turn a session's recording into something to hear and something to look at.

Kept out of run_ensemble.py so the supervisor stays about processes; used both after a run and by
`--from-midi`, which renders or plots an existing recording without playing anything.
"""

from __future__ import annotations

import sys
from pathlib import Path

from protocol.ensemble import Ensemble


def make_artifacts(
    midi: Path, ens: Ensemble, render: Path | None, plot: Path | None, quiet: bool = False
) -> int:
    """Render and/or plot `midi` with the ensemble's chord plan; 0, or 1 after one line per failure.

    Both are attempted even if the first fails: a missing soundfont should not cost the picture.
    """
    from launcher.plot import PlotError
    from launcher.render import RenderError

    if not midi.is_file():
        print(f"error: no recording at {midi} (is the conductor on another --host?)", file=sys.stderr)
        return 1
    rc = 0
    if render is not None:
        from launcher.render import render_wav

        try:
            result = render_wav(midi, render, progress=not quiet)
        except (RenderError, ValueError) as exc:
            print(f"error: --render: {exc}", file=sys.stderr)
            rc = 1
        else:
            if not quiet:
                print(f"wrote {result.path}: {result.seconds:.1f} s, peak {result.peak_dbfs:.1f} dBFS "
                      f"(normalised by {result.gain_db:+.1f} dB)")
    if plot is not None:
        from launcher.plot import plot_piano_roll

        try:
            png = plot_piano_roll(
                midi, plot, ens.plan_text, ens.meter, ens.loop, ens.key, title=f"{ens.name}: {midi.name}"
            )
        except (PlotError, ValueError) as exc:
            print(f"error: --plot: {exc}", file=sys.stderr)
            rc = 1
        else:
            if not quiet:
                print(f"wrote {png}")
    return rc
