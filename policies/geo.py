"""Where a location pin is (#17 item 4): the nearest building of grids.yaml within `pin_radius_m`, else the grid
whose `area` polygon holds the pin, else nowhere we serve.

Owns: the distance on the earth (haversine), the point-in-polygon test (shapely) and `match_pin`.
Must not: know who sent the pin, ask anything or route a case (the dialogue confirms, casestore routes by the
building it is given).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shapely.geometry import Point, Polygon
from shapely.prepared import PreparedGeometry, prep

from policies.models import Grids

EARTH_RADIUS_M = 6_371_008.8


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres between two [lat, lng] points."""
    lat1, lng1, lat2, lng2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class PinMatch:
    """`kind` "building": the pin is at (estate, building); "grid": inside grid `grid_id`'s area, and (estate,
    building) is that grid's building nearest the pin, which routes a case there."""

    kind: str
    grid_id: str
    grid_name: str
    estate: str
    building: int
    distance_m: float

    @property
    def place(self) -> str:
        """How the resident is asked about it."""
        if self.kind == "building":
            return f"{self.estate}{self.building}号楼"
        return f"{self.grid_name}（{self.estate}一带）"

    def where(self, lat: float, lng: float) -> str:
        """The case's place text: the matched place and the pin."""
        return f"{self.place}附近（定位 {lat:.5f}, {lng:.5f}）"


@dataclass(frozen=True)
class _Index:
    buildings: tuple[tuple[str, int, tuple[float, float], str, str], ...]  # estate, number, point, grid id, name
    areas: tuple[tuple[str, str, PreparedGeometry], ...]  # grid id, name, polygon (x = lng, y = lat)


_INDEXES: dict[int, tuple[Grids, _Index]] = {}  # by id: policies are loaded once per process (and kept here)


def _index(grids: Grids) -> _Index:
    held = _INDEXES.get(id(grids))
    if held is None or held[0] is not grids:
        held = _INDEXES[id(grids)] = (grids, _build_index(grids))
    return held[1]


def _build_index(grids: Grids) -> _Index:
    names = {g.id: g.name for c in grids.communities for g in c.grids}
    buildings = []
    for community in grids.communities:
        for estate in community.estates:
            for number, point in sorted(estate.building_locations.items()):
                grid_id = grids.grid_for(estate.name, number)
                if grid_id is not None:
                    buildings.append((estate.name, number, point, grid_id, names[grid_id]))
    areas = tuple((g.id, g.name, prep(Polygon([(lng, lat) for lat, lng in g.area])))
                  for c in grids.communities for g in c.grids if g.area)
    return _Index(tuple(buildings), areas)


def match_pin(grids: Grids, lat: float, lng: float) -> PinMatch | None:
    """The building a pin is at (nearest within `grids.pin_radius_m`), else the grid whose area holds it, else None."""
    if not (math.isfinite(lat) and math.isfinite(lng) and -90 <= lat <= 90 and -180 <= lng <= 180):
        return None
    index = _index(grids)
    ranked = sorted(((distance_m((lat, lng), point), estate, number, grid_id, name)
                     for estate, number, point, grid_id, name in index.buildings), key=lambda r: r[0])
    if ranked and ranked[0][0] <= grids.pin_radius_m:
        d, estate, number, grid_id, name = ranked[0]
        return PinMatch("building", grid_id, name, estate, number, round(d, 1))
    where = Point(lng, lat)
    for grid_id, name, area in index.areas:
        if area.covers(where):  # a pin on the line between two grids goes to the first
            inside = [r for r in ranked if r[3] == grid_id]
            if not inside:  # an area without located buildings cannot route: treat the pin as unknown
                return None
            d, estate, number, _, _ = inside[0]
            return PinMatch("grid", grid_id, name, estate, number, round(d, 1))
    return None
