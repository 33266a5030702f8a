"""The whole-file passes of SkyTNT's batch tokenizer: collect, remap, default instruments, key fix.

They are kept bit-for-bit faithful (including quirks such as a first CC value below ``cc_eps`` being
dropped) because a pretrained model only saw token streams made this way. Records are lists
``[event, time1_abs, time2, track, *params]`` with params in the row order of the vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.model.vocab import Vocab

NOTE = "note"
PATCH = "patch_change"
CC = "control_change"
TEMPO = "set_tempo"
TIME_SIG = "time_signature"
KEY_SIG = "key_signature"
MAX_TRACKS = 128


@dataclass
class Collected:
    """Everything pass 1 learns about a score that the later passes need."""

    events: dict = field(default_factory=dict)  # dedup key -> record, in SkyTNT's map order
    track_map: dict[int, dict[int, int]] = field(default_factory=lambda: {c: {} for c in range(16)})
    first_note_track: dict[int, int] = field(default_factory=dict)
    channels: list[int] = field(default_factory=list)
    patch_channels: list[int] = field(default_factory=list)
    has_notes: list[bool] = field(default_factory=lambda: [False] * 16)
    note_tracks: dict[int, list[int]] = field(default_factory=lambda: {c: [] for c in range(16)})
    hist: list[int] = field(default_factory=lambda: [0] * 12)
    key_sigs: list[list] = field(default_factory=list)
    track_channels: dict[int, list[int]] = field(default_factory=dict)


def note_channel_col(vocab: Vocab) -> int:
    """Record index of a note's channel (V1 puts duration before channel)."""
    return vocab.column(NOTE, "channel")


def note_duration_col(vocab: Vocab) -> int:
    return vocab.column(NOTE, "duration")


def collect(vocab: Vocab, score: list, cc_eps: int, tempo_eps: int) -> Collected:
    """Pass 1: quantise, drop redundant controller/patch/tempo events per track, trim note overlaps."""
    tpb = score[0]
    max_bpm = vocab.param_size["bpm"] - 1
    ch_col, dur_col = note_channel_col(vocab), note_duration_col(vocab)
    st = Collected()
    for k, track in enumerate(score[1:1 + MAX_TRACKS]):
        last_notes: dict[tuple[int, int], tuple[tuple, list]] = {}
        last_patch: dict[int, int | None] = {}
        last_cc: dict[tuple[int, int], int] = {}
        last_bpm = 0
        channels_here = st.track_channels.setdefault(k, [])
        for ev in track:
            name = ev[0]
            if name not in vocab.events:
                continue
            c = -1
            t = round(16 * ev[1] / tpb)
            rec: list = [name, t // 16, t % 16, k]
            if name == NOTE:
                d, c, p, v = ev[2:6]
                if not 0 <= c <= 15:
                    continue
                d = max(1, round(16 * d / tpb))
                rec += [c, p, v, d] if vocab.version == "v2" else [d, c, p, v]
                st.has_notes[c] = True
                st.first_note_track.setdefault(c, k)
                if k not in st.note_tracks[c]:
                    st.note_tracks[c].append(k)
                if c != 9:
                    st.hist[p % 12] += 1
                if c not in channels_here:
                    channels_here.append(c)
            elif name == PATCH:
                c, p = ev[2:4]
                if not 0 <= c <= 15:
                    continue
                rec += [c, p]
                if last_patch.setdefault(c, None) == p:
                    continue
                last_patch[c] = p
                if c not in st.patch_channels:
                    st.patch_channels.append(c)
            elif name == CC:
                c, cc, v = ev[2:5]
                if not 0 <= c <= 15:
                    continue
                rec += [c, cc, v]
                if abs(last_cc.setdefault((c, cc), 0) - v) < cc_eps:
                    continue
                last_cc[(c, cc)] = v
            elif name == TEMPO:
                tempo = ev[2]
                if tempo == 0:
                    continue
                bpm = min(int(60 / (tempo / 10**6)), max_bpm)
                rec += [bpm]
                if abs(last_bpm - bpm) < tempo_eps:
                    continue
                last_bpm = bpm
            elif name == TIME_SIG:
                nn, dd = ev[2:4]
                if not (1 <= nn <= 16 and 1 <= dd <= 4):
                    continue
                rec += [nn - 1, dd - 1]
            else:  # key_signature
                sf, mi = ev[2:4]
                if not (-7 <= sf <= 7 and 0 <= mi <= 1):
                    continue
                rec += [sf + 7, mi]
                st.key_sigs.append(rec)

            if name == NOTE:
                key = (NOTE, rec[1], rec[2], k, rec[ch_col], rec[ch_col + 1])
            elif name in (TIME_SIG, KEY_SIG):
                key = tuple(rec[:-2])
            else:
                key = tuple(rec[:-1])
            if c != -1:
                if c not in st.channels:
                    st.channels.append(c)
                st.track_map[c].setdefault(k, 0)
            if name == NOTE:
                cp = (c, rec[ch_col + 1])
                if cp in last_notes:
                    last_key, last = last_notes[cp]
                    last[dur_col] = max(0, min(last[dur_col], t - (last[1] * 16 + last[2])))
                    if last[dur_col] == 0:
                        st.events.pop(last_key, None)
                last_notes[cp] = (key, rec)
            st.events[key] = rec
    return st


def remap(vocab: Vocab, st: Collected, events: list[list], empty: list[int],
          remove_empty: bool) -> tuple[list[list], list[int], dict[int, int]]:
    """Renumber channels (9 stays drums) and give each (channel, note track) its own track from 1.

    Returns the new record list, the mapped empty channels, and the new first-note-track map.
    ``st`` is updated in place (channels, patch_channels, key_sigs, track_channels).
    """
    ch_col = note_channel_col(vocab)
    st.patch_channels = []
    cmap: dict[int, int] = {9: 9} if 9 in st.channels else {}
    channels = sorted(st.channels, key=lambda x: x in empty) if remove_empty else st.channels
    count = 0
    for c in channels:
        if c == 9:
            continue
        cmap[c] = count
        count += 1
        if count == 9:
            count = 10
    st.channels = list(cmap.values())

    new_track = 0
    for c in [c for c, _ in sorted(cmap.items(), key=lambda x: x[1])]:
        if remove_empty and c in empty:
            continue
        tr_map = st.track_map[c]
        for tr in tr_map:
            if st.note_tracks[c] and tr not in st.note_tracks[c]:
                continue
            new_track += 1
            tr_map[tr] = new_track
    empty = [cmap[c] for c in empty]

    first_note_track: dict[int, int] = {}
    st.key_sigs = []
    extra: list[list] = []
    dropped: set[int] = set()
    for rec in events:
        name, tr = rec[0], rec[3]
        if name == NOTE:
            c = rec[ch_col]
            rec[ch_col] = cmap[c]
            rec[3] = st.track_map[c][tr]
            first_note_track.setdefault(rec[ch_col], rec[3])
        elif name in (TEMPO, TIME_SIG):
            rec[3] = 0
        elif name == KEY_SIG:
            pairs: list[tuple[int, int]] = []
            for c, tr_map in st.track_map.items():
                if tr in tr_map and tr_map[tr] != 0 and (c, tr_map[tr]) not in pairs:
                    pairs.append((c, tr_map[tr]))
            if not pairs:
                if tr == 0:
                    st.key_sigs.append(rec)
                else:
                    dropped.add(id(rec))
                continue
            st.key_sigs.append(rec)
            rec[3] = pairs[0][1]
            if pairs[0][0] == 9:
                rec[4] = 7
            for c, nt in pairs[1:]:
                copy = [*rec]
                copy[3] = nt
                if c == 9:
                    copy[4] = 7
                st.key_sigs.append(copy)
                extra.append(copy)
        elif name in (PATCH, CC):
            c = rec[4]
            rec[4] = cmap[c]
            if st.note_tracks[c] and tr not in st.note_tracks[c]:
                tr = st.note_tracks[c][0]
            rec[3] = st.track_map[c][tr]
            if name == PATCH and rec[4] not in st.patch_channels:
                st.patch_channels.append(rec[4])
    if dropped:
        events = [r for r in events if id(r) not in dropped]
    events += extra
    st.track_channels = {}
    for c, tr_map in st.track_map.items():
        if c not in cmap:
            continue
        for nt in tr_map.values():
            chans = st.track_channels.setdefault(nt, [])
            if cmap[c] not in chans:
                chans.append(cmap[c])
    return events, empty, first_note_track


def detect_key(hist: list[int], threshold: float = 0.7) -> int | None:
    """Major-key root pitch class from a pitch-class histogram, or None when not clearly diatonic."""
    total = sum(hist)
    if total == 0 or sum(sorted(hist, reverse=True)[:7]) / total < threshold:
        return None
    keys = sorted(pc for _, pc in sorted(zip(hist, range(12), strict=True), reverse=True,
                                         key=lambda x: x[0])[:7])
    semitones = [keys[i] for i in range(len(keys)) if keys[i] - keys[i - 1] in (1, -11)]
    if len(semitones) != 2:
        return None
    gap = semitones[1] - semitones[0]
    if gap == 5:
        return semitones[0]
    if gap == 7:
        return semitones[1]
    return None


def fix_key_signatures(st: Collected, events: list[list], remapped: bool) -> None:
    """Add detected key signatures, or repair/remove C-major placeholders, in place (V2 only)."""
    if st.key_sigs and not all(ks[4] == 7 for ks in st.key_sigs):
        return
    root = detect_key(st.hist)
    if root is None:
        for ks in st.key_sigs:
            if ks in events:  # equality, as SkyTNT's list.remove; a replaced duplicate may be gone
                events.remove(ks)
        return
    sf = (7 * root) % 12
    if sf > 6:
        sf -= 12
    if not st.key_sigs:
        for tr, chans in st.track_channels.items():
            if remapped and tr == 0:
                continue
            events.append([KEY_SIG, 0, 0, tr, (0 if chans == [9] else sf) + 7, 0])
        return
    for ks in st.key_sigs:
        if st.track_channels.get(ks[3]) == [9]:
            continue
        ks[4] = sf + 7
        ks[5] = 0
