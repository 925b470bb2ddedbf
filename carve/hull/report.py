"""What :func:`carve.hull.agreement.robust_carve` found: a row per view, the estimates, a diagnosis.

The report is plain data: ``to_dict()`` gives JSON-able values (the command line writes it as
``NAME_views.json``), ``table()`` the per-view table for a terminal.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["ViewRow", "HullReport"]


@dataclass
class ViewRow:
    """One view's agreement with the hull.

    Attributes:
        name: the view's name (file stem or index).
        iou: intersection over union of the mask and the final hull's reprojection.
        missed_pixels: mask pixels the final hull leaves empty (its reprojection does not cover).
        missed_fraction: ``missed_pixels`` over the mask's pixels.
        unique_rejections: voxels that nearly all other views keep and this view rejects.
        excluded: True when the robust hull was carved without this view.
        reason: why it was excluded (empty when it was not).
    """

    name: str
    iou: float
    missed_pixels: int
    missed_fraction: float
    unique_rejections: int
    excluded: bool = False
    reason: str = ""


@dataclass
class HullReport:
    """Per-view agreement and what the robust carve did about it.

    Attributes:
        views: one :class:`ViewRow` per input view, in input order.
        misalignment_px: estimated calibration misalignment in pixels (0 when the views agree).
        slack: the ``slack`` (px) the robust hull was carved with.
        tolerance: the ``tolerance`` it was carved with.
        excluded: indices of the views it was carved without.
        diagnosis: for an empty or degenerate hull, which views reject everything and why; empty
            when the hull is sound.
        voxels: occupied voxels of the robust hull; exact_voxels: of the exact hull (every view, slack 0).
        seconds: wall time of the whole robust carve.
    """

    views: list = field(default_factory=list)
    misalignment_px: float = 0.0
    slack: float = 0.0
    tolerance: int = 0
    excluded: list = field(default_factory=list)
    diagnosis: str = ""
    voxels: int = 0
    exact_voxels: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the hull is sound (no diagnosis)."""
        return not self.diagnosis

    def to_dict(self) -> dict:
        """JSON-able dict: the attributes, ``views`` as a list of dicts.

        Example:
            >>> HullReport([ViewRow("a", 0.9, 10, 0.01, 3)]).to_dict()["views"][0]["name"]
            'a'
        """
        out = asdict(self)
        out["views"] = [asdict(v) if not isinstance(v, dict) else v for v in self.views]
        out["excluded"] = [int(i) for i in self.excluded]
        return out

    def table(self) -> str:
        """The per-view table, one line a view, a legend and a summary line.

        Columns: the IoU of the hull's reprojection with the view's mask; the mask pixels the hull
        leaves empty (count, and share of the mask); the voxels nearly all other views keep that
        this view rejects ("lone vetoes"); whether the view was excluded, and why.

        Example:
            >>> print(HullReport([ViewRow("0001", 0.97, 120, 0.004, 0)], voxels=5).table().splitlines()[1])
            0001    0.970        120     0.40%            0  no
        """
        width = max([4] + [len(v.name) for v in self.views])
        lines = [f"{'view':<{width}}  {'IoU':>7}  {'missed px':>9}  {'missed %':>8}  {'lone vetoes':>11}  excluded"]
        for v in self.views:
            note = f"yes: {v.reason}" if v.excluded else "no"
            lines.append(f"{v.name:<{width}}  {v.iou:7.3f}  {v.missed_pixels:9d}  {v.missed_fraction:8.2%}  "
                         f"{v.unique_rejections:11d}  {note}")
        lines.append("(missed: mask pixels the hull leaves empty; lone vetoes: voxels nearly all other views keep "
                     "that this view rejects)")
        lines.append(f"misalignment {self.misalignment_px:.2f} px, slack {self.slack:.2f} px, tolerance "
                     f"{self.tolerance}, {len(self.excluded)} of {len(self.views)} views excluded, "
                     f"{self.voxels} voxels (exact hull {self.exact_voxels})")
        if self.diagnosis:
            lines.append(f"diagnosis: {self.diagnosis}")
        return "\n".join(lines)
