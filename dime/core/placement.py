"""The one text form of a placement, written by solve, the sweep CSV and the run CSV.

``conv1+conv2,conv3@edge/threads=2 | conv4..fc3@cloud/default``: consecutive bundles on the
same role and setting share one ``@role/setting``; within a group "," separates bundles,
``a`` is a one-layer bundle, ``a+b`` a two-layer bundle and ``a..b`` one bundle of layers a
through b. Roles (not devices) are named, so that the text stays unambiguous when one device
plays two roles.
"""

from __future__ import annotations

from typing import Sequence

from dime.core.costs import ROLE_NAMES, Assignment, check_chain
from dime.errors import UsageError

GROUP_SEP = " | "


def bundle_text(layer_names: Sequence[str], start: int, end: int) -> str:
    """``a``, ``a+b`` or ``a..c``: one bundle of consecutive layers."""
    if end - start >= 2:
        return f"{layer_names[start]}..{layer_names[end]}"
    return "+".join(layer_names[start : end + 1])


def format_placement(
    layer_names: Sequence[str], placement: Sequence[Assignment], role_names: Sequence[str] = ROLE_NAMES
) -> str:
    groups: list[tuple[int, str, list[str]]] = []
    for a in placement:
        text = bundle_text(layer_names, a.start, a.end)
        if groups and groups[-1][0] == a.role and groups[-1][1] == a.setting:
            groups[-1][2].append(text)
        else:
            groups.append((a.role, a.setting, [text]))
    return GROUP_SEP.join(f"{','.join(b)}@{role_names[r]}/{t}" for r, t, b in groups)


def check_placement(layer_names: Sequence[str], placement: Sequence[Assignment],
                    role_names: Sequence[str] = ROLE_NAMES, where: str = "placement") -> None:
    """check_chain, as a UsageError that shows the placement in its text form (not reprs)."""
    try:
        check_chain(placement, len(layer_names), layer_names)
    except ValueError as e:
        try:
            text = format_placement(layer_names, placement, role_names)
        except IndexError:  # a layer or role out of range: the layer indices must do
            text = GROUP_SEP.join(f"{a.start}..{a.end}@{a.role}/{a.setting}" for a in placement)
        raise UsageError(f"{where}: {text}: {e}") from None


def parse_placement(
    layer_names: Sequence[str], text: str, role_names: Sequence[str] = ROLE_NAMES
) -> list[Assignment]:
    """The inverse of format_placement; raises UsageError on text it did not write."""
    index = {name: i for i, name in enumerate(layer_names)}

    def layer(name: str) -> int:
        if name not in index:
            raise UsageError(f"placement {text!r}: unknown layer {name!r}")
        return index[name]

    out: list[Assignment] = []
    for group in text.split(GROUP_SEP):
        bundles_text, sep, where = group.rpartition("@")
        role_tag, slash, setting = where.partition("/")
        if not sep or not slash or role_tag not in role_names or not bundles_text:
            raise UsageError(f"placement {text!r}: cannot read {group!r}")
        role = list(role_names).index(role_tag)
        for b in bundles_text.split(","):
            if ".." in b:
                first, _, last = b.partition("..")
                s, e = layer(first), layer(last)
            else:
                names = b.split("+")
                s, e = layer(names[0]), layer(names[-1])
                if list(layer_names[s : e + 1]) != names:
                    raise UsageError(f"placement {text!r}: {b!r} is not a run of consecutive layers")
            if e < s:
                raise UsageError(f"placement {text!r}: {b!r} runs backwards")
            out.append(Assignment(s, e, role, setting))
    try:
        check_chain(out, len(layer_names))
    except ValueError as e:
        raise UsageError(f"placement {text!r}: {e}") from None
    return out
