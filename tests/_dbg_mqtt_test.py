import json
from pathlib import Path
import mido
from support.ensembles import run_launcher, write_ensemble

def test_dbg(tmp_path: Path, mosquitto) -> None:
    yaml_path = write_ensemble(tmp_path, {"bus": {"transport": "mqtt", "mqtt": {"host": mosquitto.host, "port": mosquitto.port}}})
    proc = run_launcher([str(yaml_path), "--bars", "4", "--record", str(tmp_path / "out.mid"), "--report", str(tmp_path / "report.json"), "--quiet"])
    print(proc.stderr[-3000:])
    mid = mido.MidiFile(str(tmp_path / "out.mid"))
    for tr in mid.tracks:
        t = 0; notes = []
        for m in tr:
            t += m.time
            if m.type == "note_on" and m.velocity > 0: notes.append(round(t / mid.ticks_per_beat, 3))
        print(tr.name, notes)
    rep = json.loads((tmp_path / "report.json").read_text())
    print(json.dumps({k: {kk: v.get(kk) for kk in ("notes", "late_notes", "invalid_messages", "invalid_reasons")} for k, v in rep["parts"].items()}))
    print(json.dumps(rep.get("conductor")))
