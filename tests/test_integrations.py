"""The shipped Max patch and TouchOSC layout speak the protocol exactly.

A surface that sends a misspelled address fails quietly on stage: the conductor counts the message as
invalid and plays on. So every message either file can send is worked out from the file itself (the
Max patch by following its patch cords, the layout from its OSC message definitions), with the values
each control can really produce (a number box's minimum and maximum, a fader's scaled ends, a toggle's
0 and 1), and handed to the conductor's own parser. Both files must reach every control in the table,
listen for the conductor's beat ticks, and stay in step with their sources.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import struct
import xml.etree.ElementTree as ET
import zlib
from dataclasses import fields
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from conductor.control import parse_control
from protocol.codec import BY_CLASS, osc_address
from protocol.controls import CONTROLS
from protocol.ensemble import load_ensemble, parse_ensemble
from protocol.messages import Control
from protocol.status_messages import BeatTick

ROOT = Path(__file__).resolve().parent.parent
MAXPAT = ROOT / "integrations" / "max" / "barcelona.maxpat"
TOUCHOSC = ROOT / "integrations" / "touchosc"
DEFAULT = ROOT / "ensembles" / "default.yaml"

ENSEMBLE = load_ensemble(DEFAULT)
AGENTS = {a.name for a in ENSEMBLE.agents}
BEAT_ADDRESS = osc_address(ENSEMBLE.name, BY_CLASS[BeatTick])
REPLY_PORT = 57301  # what integrations/README.md tells musicians to set as control.reply_port
# A musician expects these on every agent's strip, not just somewhere in the file.
EVERY_AGENT = {"mute", "solo", "temperature", "density"}

Atom = int | float | str
Message = list[Atom]  # address first, then the arguments, as udpsend or TouchOSC puts them on the wire


# -- Max: follow the patch cords from each control to udpsend -----------------------------------------
def max_atom(token: str) -> Atom:
    """How Max types a word in a message box: ints and floats become numbers, the rest symbols."""
    for kind in (int, float):
        try:
            return kind(token)
        except ValueError:
            pass
    return token


# What a musician might type into a textedit; valid both as a whole plan and as one bar's chords.
TEXTEDIT_SAMPLE: Message = ["text", "Dm7", "G7"]


class MaxPatch:
    """The boxes and cords of a patcher, and what each outlet can emit for the objects we use."""

    def __init__(self, path: Path) -> None:
        self.data = json.loads(path.read_text(encoding="utf-8"))["patcher"]
        self.boxes: dict[str, dict[str, Any]] = {b["box"]["id"]: b["box"] for b in self.data["boxes"]}
        self.lines = [
            (ln["patchline"]["source"], ln["patchline"]["destination"]) for ln in self.data["lines"]
        ]

    def text(self, box_id: str) -> list[str]:
        return str(self.boxes[box_id].get("text", "")).split()

    def named(self, head: str) -> list[str]:
        """Ids of object boxes whose first word is `head` (`udpsend`, `route`, ...)."""
        return [i for i, b in self.boxes.items() if b["maxclass"] == "newobj" and self.text(i)[:1] == [head]]

    def feeding(self, box_id: str, inlet: int = 0) -> list[tuple[str, int]]:
        """(box, outlet) pairs cabled into an inlet; `[r x]` is fed by whatever feeds every `[s x]`."""
        words = self.text(box_id)
        if self.boxes[box_id]["maxclass"] == "newobj" and words[:1] in (["r"], ["receive"]):
            sends = [i for i in self.boxes if self.text(i)[:2] in (["s", words[1]], ["send", words[1]])]
            return [src for s in sends for src in self.feeding(s)]
        return [(src, out) for (src, out), (dst, inl) in self.lines if dst == box_id and inl == inlet]

    def inputs(self, box_id: str, depth: int) -> list[Message]:
        return [m for src, out in self.feeding(box_id) for m in self.outputs(src, out, depth + 1)]

    def outputs(self, box_id: str, outlet: int, depth: int = 0) -> list[Message]:
        """Every message this outlet can send, for the few object classes a control path uses."""
        assert depth < 50, f"cycle through {box_id}"
        box = self.boxes[box_id]
        cls = box["maxclass"]
        if cls == "message":
            return [[max_atom(t) for t in self.text(box_id)]] if outlet == 0 and self.text(box_id) else []
        if cls in ("number", "flonum"):
            assert "minimum" in box and "maximum" in box, f"{box_id}: a number box must be bounded"
            return [[box["minimum"]], [box["maximum"]]] if outlet == 0 else []
        if cls == "toggle":
            return [[0], [1]]
        if cls == "textedit":
            return [list(TEXTEDIT_SAMPLE)] if outlet == 0 else []
        assert cls == "newobj", f"{box_id}: a {cls} in a control path is not modelled here"
        head, *args = self.text(box_id)
        incoming = self.inputs(box_id, depth) if head != "loadbang" else []
        if head == "loadbang":
            return [["bang"]]
        if head in ("r", "receive"):
            return incoming
        if head == "route":
            if outlet < len(args):
                return [m[1:] for m in incoming if m[:1] == [max_atom(args[outlet])]]
            return [m for m in incoming if m[:1] not in [[max_atom(a)] for a in args]]
        if head == "prepend":
            # `set x` changes what prepend puts in front instead of passing through.
            prefixes = [[max_atom(a) for a in args]] + [m[1:] for m in incoming if m[:1] == ["set"]]
            return [p + m for p in prefixes for m in incoming if m[:1] != ["set"]]
        raise AssertionError(f"{box_id}: [{head}] in a control path is not modelled here")


PATCH = MaxPatch(MAXPAT)


def max_messages() -> list[Message]:
    """Everything the patch can hand to its udpsend."""
    (udp,) = PATCH.named("udpsend")
    return PATCH.inputs(udp, 0)


# -- TouchOSC: read the OSC message definitions ---------------------------------------------------------
def tosc_root() -> ET.Element:
    return ET.fromstring(zlib.decompress((TOUCHOSC / "barcelona.tosc").read_bytes()))


def partial_value(partial: ET.Element, which: str = "value") -> Atom:
    """A partial's constant (or a scale end) converted as TouchOSC sends it."""
    raw = partial.findtext(which) or ""
    conversion = partial.findtext("conversion")
    if conversion == "INTEGER":
        return round(float(raw))
    if conversion == "FLOAT":
        return float(raw)
    if conversion == "BOOLEAN":
        return int(float(raw) != 0)
    return raw


def osc_defs(root: ET.Element) -> list[tuple[ET.Element, ET.Element]]:
    """(node, <osc>) for every enabled OSC message in the layout."""
    return [
        (node, osc)
        for node in root.iter("node")
        for osc in node.findall("messages/osc")
        if osc.findtext("enabled") == "1"
    ]


def osc_path(osc: ET.Element) -> str:
    partials = osc.findall("path/partial")
    assert all(p.findtext("type") == "CONSTANT" for p in partials), "only constant paths are checked"
    return "".join(p.findtext("value") or "" for p in partials)


def tosc_messages() -> list[Message]:
    """Every message the layout sends: constants as written, each VALUE at both ends of its scale."""
    out: list[Message] = []
    for _, osc in osc_defs(tosc_root()):
        if osc.findtext("send") != "1":
            continue
        choices: list[list[Atom]] = []
        for p in osc.findall("arguments/partial"):
            if p.findtext("type") == "VALUE":
                choices.append([partial_value(p, "scaleMin"), partial_value(p, "scaleMax")])
            else:
                assert p.findtext("type") == "CONSTANT", "arguments are constants or the control's value"
                choices.append([partial_value(p)])
        out += [[osc_path(osc), *args] for args in itertools.product(*choices)]
    return out


def float32(value: Atom) -> Atom:
    """A float as Max's udpsend and TouchOSC send it: float32 ('f'), so 0.01 arrives as 0.0099999998."""
    if isinstance(value, float):
        return float(struct.unpack(">f", struct.pack(">f", value))[0])
    return value


def on_the_wire(surface: str) -> list[Message]:
    """A surface's messages with their floats rounded the way the conductor will receive them."""
    return [[float32(a) for a in m] for m in SURFACES[surface]()]


SURFACES = {"max": max_messages, "touchosc": tosc_messages}


def parsed(surface: str) -> list[Control]:
    return [parse_control(ENSEMBLE.name, str(m[0]), m[1:]) for m in on_the_wire(surface)]


# -- (1) and (2): what both surfaces send ---------------------------------------------------------------
@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_every_message_parses_as_a_control(surface: str) -> None:
    messages = on_the_wire(surface)
    assert messages, f"{surface}: sends nothing"
    for m in messages:
        address = str(m[0])
        assert address.startswith(f"/barcelona/{ENSEMBLE.name}/"), f"{surface}: {address} lacks the prefix"
        ctl = parse_control(ENSEMBLE.name, address, m[1:])  # raises ControlError on any mismatch
        if ctl.target and ctl.target != "*":
            assert ctl.target in AGENTS, f"{surface}: {address} names no agent of {sorted(AGENTS)}"


@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_every_control_is_reachable(surface: str) -> None:
    controls = parsed(surface)
    ensemble = {c.param for c in controls if not c.target}
    per_agent: dict[str, set[str]] = {}
    for c in controls:
        if c.target in AGENTS:
            per_agent.setdefault(c.param, set()).add(c.target)
    for spec in CONTROLS:
        if spec.scope == "ensemble":
            assert spec.name in ensemble, f"{surface}: no way to send {spec.name}"
        else:
            assert per_agent.get(spec.name), f"{surface}: no agent gets {spec.name}"
    for name in EVERY_AGENT:
        assert per_agent.get(name) == AGENTS, f"{surface}: {name} missing for {AGENTS - per_agent[name]}"
    assert any(c.param == "mute" and c.target == "*" for c in controls), f"{surface}: no mute-all"


# -- Max specifics ---------------------------------------------------------------------------------------
def test_maxpat_is_a_patcher_max_opens() -> None:
    data = PATCH.data
    assert data["fileversion"] == 1 and data["appversion"]["major"] >= 8
    assert len(data["rect"]) == 4
    assert len(PATCH.boxes) == len(data["boxes"]), "box ids repeat"
    for box_id, box in PATCH.boxes.items():
        assert len(box["patching_rect"]) == 4, box_id
        assert isinstance(box["numinlets"], int) and isinstance(box["numoutlets"], int), box_id
        assert len(box.get("outlettype", [])) == box["numoutlets"], f"{box_id}: outlettype per outlet"
        if box["maxclass"] in ("newobj", "message", "comment"):
            assert "text" in box, box_id
        if box["maxclass"] == "message":
            # A comma or semicolon would split the box into several messages.
            assert not any(c in str(box["text"]) for c in ",;"), box_id


def test_maxpat_cords_join_existing_inlets_and_outlets() -> None:
    assert PATCH.lines
    for (src, outlet), (dst, inlet) in PATCH.lines:
        assert src in PATCH.boxes and dst in PATCH.boxes, (src, dst)
        assert 0 <= outlet < PATCH.boxes[src]["numoutlets"], (src, outlet)
        assert 0 <= inlet < PATCH.boxes[dst]["numinlets"], (dst, inlet)


def test_maxpat_sends_to_the_control_port_and_nothing_is_left_dangling() -> None:
    (udp,) = PATCH.named("udpsend")
    _, host, port = PATCH.text(udp)
    assert host == ENSEMBLE.control.listen and int(port) == ENSEMBLE.control.port
    sent = {str(m[0]) for m in max_messages()}
    # Every box that names a control address must actually reach udpsend.
    for box_id in PATCH.boxes:
        words = PATCH.text(box_id)
        named = [w for w in words if w.startswith("/barcelona/")]
        if named and words[0] != "route":
            assert named[0] in sent, f"{box_id} ({' '.join(words)}) is not cabled to udpsend"


def test_maxpat_displays_beat_ticks() -> None:
    (rcv,) = PATCH.named("udpreceive")
    assert PATCH.text(rcv)[1:] == [str(REPLY_PORT)]
    routes = [r for r in PATCH.named("route") if PATCH.text(r)[1:] == [BEAT_ADDRESS]]
    assert routes, f"no [route {BEAT_ADDRESS}]"
    (route,) = routes
    assert (rcv, 0) in PATCH.feeding(route)
    unpacks = [u for u in PATCH.named("unpack") if (route, 0) in PATCH.feeding(u)]
    assert len(unpacks) == 1
    (unpack,) = unpacks
    # The protocol's wire tags, with its doubles read as Max floats.
    expected = [{"d": "f"}.get(BeatTick.SPEC[f.name][0], BeatTick.SPEC[f.name][0]) for f in fields(BeatTick)]
    assert PATCH.text(unpack)[1:] == expected
    for outlet in range(len(expected)):
        assert any(src == [unpack, outlet] for src, _ in PATCH.lines), f"unpack outlet {outlet} shows nothing"


def test_default_yaml_sends_beat_ticks_to_the_shipped_surfaces_port() -> None:
    """Out of the box, the patch's and the layout's beat display show something: default.yaml sends
    the ticks and status to the port the patch's [udpreceive] listens on (without a reply_port they go
    back to the surface's own source port, where neither listens)."""
    (rcv,) = PATCH.named("udpreceive")
    assert ENSEMBLE.control.reply_port == int(PATCH.text(rcv)[1]) == REPLY_PORT


# -- TouchOSC specifics ----------------------------------------------------------------------------------
def load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("touchosc_build", TOUCHOSC / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tosc_is_built_from_its_xml_source() -> None:
    build = load_build()
    source = (TOUCHOSC / "barcelona.xml").read_bytes()
    # Compare the XML inside: two zlib builds may compress the same text to different bytes.
    assert zlib.decompress((TOUCHOSC / "barcelona.tosc").read_bytes()) == build.document(source), (
        "barcelona.tosc is stale: run python integrations/touchosc/build.py"
    )
    assert zlib.decompress(build.build(source)) == build.document(source)


def test_tosc_is_a_touchosc_document() -> None:
    root = tosc_root()
    assert root.tag == "lexml" and root.get("version") == "3"
    (top,) = list(root)
    assert top.tag == "node" and top.get("type") == "GROUP"
    nodes = list(root.iter("node"))
    assert len({n.get("ID") for n in nodes}) == len(nodes), "node IDs repeat"
    names = [n.findtext("properties/property[key='name']/value") for n in nodes]
    assert len(set(names)) == len(names), "control names repeat"
    for node in nodes:
        assert node.get("type") in {"GROUP", "BUTTON", "FADER", "LABEL"}, node.get("type")
        frame = node.find("properties/property[key='frame']/value")
        assert frame is not None and all(frame.findtext(k) for k in "xywh"), node.get("ID")


def test_tosc_displays_beat_ticks() -> None:
    bound: dict[int, str] = {}
    for node, osc in osc_defs(tosc_root()):
        if osc.findtext("receive") == "1" and osc_path(osc) == BEAT_ADDRESS:
            for i, p in enumerate(osc.findall("arguments/partial")):
                if p.findtext("type") == "VALUE":
                    bound[i] = f"{node.get('type')}.{p.findtext('value')}"
    # bar, beat and chord (and the tempo) each land in a label's text.
    assert bound == {i: "LABEL.text" for i in range(len(fields(BeatTick)))}


def test_tosc_tempo_fader_spans_40_to_240() -> None:
    ends = {tuple(m[1:]) for m in tosc_messages() if m[0] == f"/barcelona/{ENSEMBLE.name}/tempo"}
    assert ends == {(40.0,), (240.0,)}


# -- the README's YAML steps give a valid ensemble -------------------------------------------------------
def readme_yaml_blocks() -> list[dict[str, Any]]:
    text = (ROOT / "integrations" / "README.md").read_text(encoding="utf-8")
    return [yaml.safe_load(block.split("```", 1)[0]) for block in text.split("```yaml\n")[1:]]


def test_readme_yaml_steps_give_a_valid_ensemble() -> None:
    blocks = readme_yaml_blocks()
    assert any("control" in b for b in blocks) and any("agents" in b for b in blocks)
    for block in blocks:
        data = yaml.safe_load(DEFAULT.read_text())
        data["control"] = block.get("control", data["control"])
        for given in block.get("agents", []):
            (agent,) = [a for a in data["agents"] if a["name"] == given["name"]]
            agent.update(given)  # the README shows only what changes
        ens = parse_ensemble(data, "integrations/README.md")
        if "control" in block:
            assert ens.control.reply_port == REPLY_PORT, "the README's reply_port is not the patch's port"
