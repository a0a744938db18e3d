"""Network-volume billing for the REST v2 emulator (``listNetworkVolumeBilling``; issue 13's ``invoke cost``).

A mixin of ``state.Account``: tests record what a volume cost at a time with ``charge_volume``; the operation
sums them into the buckets of the window the spec's Billing* parameters describe (``Account.billing_window``),
one record per volume per bucket that has charges, filtered by ``networkVolumeId``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

VOLUME_AMOUNTS = ("totalAmount", "standardAmount", "highPerformanceAmount")


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class NetworkVolumeBilling:
    """``charge_volume`` and ``op_listNetworkVolumeBilling``; the account keeps the charges."""

    if TYPE_CHECKING:
        lock: threading.RLock

        def billing_window(
            self, operation: str, query: Mapping[str, str]
        ) -> tuple[str, timedelta, datetime, datetime]: ...

    def _volume_charges(self) -> list[dict[str, Any]]:
        charges: list[dict[str, Any]] = self.__dict__.setdefault("_volume_charge_list", [])
        return charges

    def charge_volume(
        self, volume_id: str, at: datetime, *, standard: float = 0.0, high: float = 0.0
    ) -> None:
        """Record what a network volume cost at ``at`` (UTC): standard and high-performance storage."""
        with self.lock:
            self._volume_charges().append({"id": volume_id, "at": at, "standard": standard, "high": high})

    def op_listNetworkVolumeBilling(self, *, query: Mapping[str, str], **_: Any) -> tuple[int, Any]:
        size_name, size, start, end = self.billing_window("listNetworkVolumeBilling", query)
        wanted = query.get("networkVolumeId")
        buckets: dict[tuple[str, datetime], dict[str, float]] = {}
        for c in self._volume_charges():
            if start <= c["at"] < end and wanted in (None, c["id"]):
                bucket = start + size * ((c["at"] - start) // size)
                amounts = buckets.setdefault((c["id"], bucket), dict.fromkeys(VOLUME_AMOUNTS, 0.0))
                amounts["standardAmount"] += c["standard"]
                amounts["highPerformanceAmount"] += c["high"]
                amounts["totalAmount"] += c["standard"] + c["high"]
        records: list[dict[str, Any]] = [
            {
                "startTime": _iso(at),
                "endTime": _iso(at + size),
                "networkVolumeId": volume,
                **{k: round(v, 6) for k, v in amounts.items()},
            }
            for (volume, at), amounts in sorted(buckets.items(), key=lambda item: (item[0][1], item[0][0]))
        ]
        query_echo: dict[str, Any] = {"startTime": _iso(start), "endTime": _iso(end), "bucketSize": size_name}
        if wanted is not None:
            query_echo["networkVolumeId"] = wanted
        return 200, {
            "records": records,
            "metadata": {
                "query": query_echo,
                "recordCount": len(records),
                "uniqueNetworkVolumeCount": len({r["networkVolumeId"] for r in records}),
                "totals": {k: round(sum(float(r[k]) for r in records), 6) for k in VOLUME_AMOUNTS},
            },
        }
