"""The summary of a batch: a record per dataset and the table printed at the end.

The standard library only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from carve.batch.manifest import MANIFEST_NAME

__all__ = ["BatchReport"]


@dataclass
class BatchReport:
    """What :func:`reconstruct_many` did: a record per dataset, in input order, and the seconds it took.

    A record is the manifest's (:mod:`carve.batch.manifest`), with ``skipped: True`` for a dataset a
    rerun left alone (outputs there, hash unchanged).
    """

    records: list = field(default_factory=list)
    seconds: float = 0.0
    manifest: Path | None = None

    @property
    def failed(self) -> list:
        return [r for r in self.records if r["status"] != "done"]

    def table(self, rows: int = 40) -> str:
        """The summary: a row per dataset (the failed ones first when there are more than ``rows``), totals.

        Example:
            >>> print(BatchReport([{"name": "a", "status": "done", "voxels": 10, "seconds": 0.5, "error": None},
            ...                    {"name": "b", "status": "failed", "error": "no views"}], 1.0).table())
            dataset  status  voxels  seconds  error
            a        done        10     0.50
            b        failed                   no views
            2 datasets: 1 carved, 0 up to date, 1 failed in 1.0 s (2.00 datasets/s)
        """
        shown = self.records if len(self.records) <= rows else (self.failed + [
            r for r in self.records if r["status"] == "done"])[:rows]
        width = max([len("dataset")] + [len(r["name"]) for r in shown])
        lines = [f"{'dataset':<{width}}  status  voxels  seconds  error"]
        for r in shown:
            status = "kept" if r.get("skipped") and r["status"] == "done" else r["status"]
            voxels = "" if r.get("voxels") is None else f"{r['voxels']:,}"
            seconds = "" if r.get("seconds") is None or r.get("skipped") else f"{r['seconds']:.2f}"
            lines.append(f"{r['name']:<{width}}  {status:<6}  {voxels:>6}  {seconds:>7}  {r.get('error') or ''}".rstrip())
        if len(shown) < len(self.records):
            lines.append(f"... {len(self.records) - len(shown)} more rows in {self.manifest or MANIFEST_NAME}")
        kept = sum(1 for r in self.records if r.get("skipped") and r["status"] == "done")
        carved = sum(1 for r in self.records if r["status"] == "done") - kept
        rate = f" ({len(self.records) / self.seconds:.2f} datasets/s)" if self.seconds > 0 else ""
        lines.append(f"{len(self.records)} datasets: {carved} carved, {kept} up to date, {len(self.failed)} failed "
                     f"in {self.seconds:.1f} s{rate}")
        return "\n".join(lines)
