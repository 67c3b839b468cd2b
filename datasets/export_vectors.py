"""Map-vector exports: GeoJSON (RFC 7946) and GeoPackage (each scene's CRS), written object by object."""

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pyogrio.raw
import shapely
from pyproj import CRS, Transformer

from annotate.errors import DomainError
from annotate.models import Scene
from gpu_tasks.inference.errors import Cancelled
from gpu_tasks.run_context import RunContext

from .export_types import ExportLoss, ExportObject, WriteStats

DECIMALS = 7  # 1e-7 degrees is about a centimetre: below any scene's pixel
BATCH = 1000  # GeoPackage rows written per append
FIELDS = ("object", "class", "class_index", "scene_id", "scene", "score", "status", "source", "model_key",
          "reviewer", "reviewed_at")

ObjectsOf = Callable[[Scene], Iterable[ExportObject]]


def _properties(obj: ExportObject, scene: Scene) -> dict:
    return {"object": obj.key, "class": obj.class_name, "class_index": obj.class_index, "scene_id": scene.pk,
            "scene": scene.name, "score": obj.score, "status": obj.status, "source": obj.source,
            "model_key": obj.model_key, "reviewer": obj.reviewer, "reviewed_at": obj.reviewed_at}


def _checked(obj: ExportObject):
    """The object's polygon, refused (with the object named) when it cannot be written as a valid polygon."""
    geom = obj.geometry
    if geom is None or geom.is_empty:
        raise ExportLoss(obj.key, "its geometry is empty; reshape or delete the object, then export again")
    if not geom.is_valid:
        raise ExportLoss(obj.key, f"its polygon is invalid ({shapely.is_valid_reason(geom)}); reshape the object")
    if geom.area <= 0:
        raise ExportLoss(obj.key, "its polygon has no area; reshape or delete the object, then export again")
    return geom


def rfc7946_geometry(geom) -> dict:
    """A polygon as RFC 7946 wants it: lon/lat, exterior counter-clockwise, holes clockwise, 7 decimals.

    Rounding is kept only where the rounded polygon is still valid (vertices closer than 1e-7 could collapse)."""
    oriented = shapely.orient_polygons(geom, exterior_cw=False)
    rounded = shapely.transform(oriented, lambda xy: np.round(xy, DECIMALS))
    chosen = rounded if rounded.is_valid and rounded.area > 0 else oriented
    rings = [chosen.exterior, *chosen.interiors]
    return {"type": "Polygon", "coordinates": [[list(map(float, c)) for c in ring.coords] for ring in rings]}


def write_geojson(*, root: Path, scenes: list[Scene], objects_of: ObjectsOf, total: int, run: RunContext) -> WriteStats:
    """objects.geojson: one FeatureCollection of every scene's objects, streamed to disk."""
    stats = WriteStats(files=["objects.geojson"])
    done = 0
    with open(root / "objects.geojson", "w", encoding="utf-8") as out:
        out.write('{"type": "FeatureCollection", "features": [\n')
        first = True
        for scene in scenes:
            for obj in objects_of(scene):
                stats.objects_selected += 1
                geom = _checked(obj)
                minx, miny, maxx, maxy = geom.bounds
                feature = {"type": "Feature", "id": obj.key, "bbox": [round(v, DECIMALS) for v in
                                                                      (minx, miny, maxx, maxy)],
                           "geometry": rfc7946_geometry(geom), "properties": _properties(obj, scene)}
                out.write(("" if first else ",\n") + json.dumps(feature, separators=(",", ":")))
                first = False
                stats.objects_written += 1
                stats.labels_written += 1
                counts = stats.per_class.setdefault(obj.class_name, {"all": 0})
                counts["all"] += 1
                done += 1
                if done % BATCH == 0:
                    _tick(run, done, total)
        out.write("\n]}\n")
    return stats


def _tick(run: RunContext, done: int, total: int) -> None:
    if run.should_cancel():
        raise Cancelled()
    run.progress(min(0.99, done / max(total, 1)), f"Wrote {done} of {total} objects")


def _layer_name(scene: Scene) -> str:
    """A GeoPackage layer name from the scene's name (letters, digits, underscores) and id (names may repeat)."""
    slug = re.sub(r"[^0-9A-Za-z_]+", "_", scene.name).strip("_")[:50] or "scene"
    return f"{slug}_{scene.pk}"


def scene_crs(scene: Scene) -> CRS:
    """The scene's CRS as pyproj knows it."""
    return CRS.from_user_input(scene.crs)


def check_gpkg_layout(scenes: list[Scene], layout: str) -> None:
    """One layer for every scene needs one CRS: refuse, saying what to choose, when the scenes differ."""
    if layout != "single":
        return
    crss = {scene_crs(s).to_string() for s in scenes}
    if len(crss) > 1:
        raise DomainError(
            f"The chosen scenes are in {len(crss)} different CRSs ({', '.join(sorted(crss))}); a single layer has one "
            "CRS. Choose one layer per scene, or export the scenes of one CRS at a time.",
            detail={"gpkg_layout": sorted(crss)},
        )


def _flush(path: Path, layer: str, crs: CRS, rows: list, appended: bool) -> None:
    """Append a batch of (wkb, properties) rows to a GeoPackage layer (created with the first batch)."""
    columns = list(zip(*[[props[f] for f in FIELDS] for _wkb, props in rows], strict=True))
    field_data = []
    for name, values in zip(FIELDS, columns, strict=True):
        if name in ("class_index", "scene_id"):
            field_data.append(np.asarray(values, dtype="int64"))
        elif name == "score":
            field_data.append(np.asarray([np.nan if v is None else v for v in values], dtype="float64"))
        else:
            field_data.append(np.asarray(["" if v is None else str(v) for v in values], dtype=object))
    pyogrio.raw.write(
        str(path), geometry=np.asarray([wkb for wkb, _p in rows], dtype=object), field_data=field_data,
        fields=list(FIELDS), layer=layer, driver="GPKG", geometry_type="Polygon", crs=crs.to_wkt(),
        append=appended, promote_to_multi=False,
    )


def write_gpkg(*, root: Path, scenes: list[Scene], objects_of: ObjectsOf, total: int, layout: str,
               run: RunContext) -> WriteStats:
    """objects.gpkg: each scene's objects in the scene's CRS, one layer per scene or one layer with a scene column."""
    check_gpkg_layout(scenes, layout)
    path = root / "objects.gpkg"
    stats = WriteStats(files=["objects.gpkg"], extra={"layout": layout, "layers": {}})
    done = 0
    single_written = False
    for scene in scenes:
        crs = scene_crs(scene)
        to_scene = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        layer = "objects" if layout == "single" else _layer_name(scene)
        appended = single_written if layout == "single" else False
        rows: list = []
        count = 0
        for obj in objects_of(scene):
            stats.objects_selected += 1
            geom = shapely.transform(_checked(obj), lambda xy, t=to_scene: np.column_stack(t.transform(*xy.T)))
            if not geom.is_valid:
                raise ExportLoss(obj.key, f"its polygon is invalid in the scene's CRS ({shapely.is_valid_reason(geom)})"
                                          "; reshape the object")
            rows.append((shapely.to_wkb(geom), _properties(obj, scene)))
            if len(rows) >= BATCH:
                _flush(path, layer, crs, rows, appended)
                appended, count, rows = True, count + len(rows), []
            done += 1
            stats.objects_written += 1
            stats.labels_written += 1
            stats.per_class.setdefault(obj.class_name, {"all": 0})["all"] += 1
            if done % BATCH == 0:
                _tick(run, done, total)
        if rows:
            _flush(path, layer, crs, rows, appended)
            count += len(rows)
            appended = True
        single_written = single_written or appended
        if count or layout != "single":
            stats.extra["layers"][layer] = stats.extra["layers"].get(layer, 0) + count
            if not count:  # a scene with no objects still gets its (empty) layer: the export says it was looked at
                _empty_layer(path, layer, crs)
    if not path.exists():
        _empty_layer(path, "objects", CRS.from_epsg(4326))
    return stats


def _empty_layer(path: Path, layer: str, crs: CRS) -> None:
    """A layer with the export's columns and no rows."""
    field_data = [np.asarray([], dtype="int64") if f in ("class_index", "scene_id") else
                  np.asarray([], dtype="float64") if f == "score" else np.asarray([], dtype=object) for f in FIELDS]
    pyogrio.raw.write(str(path), geometry=np.asarray([], dtype=object), field_data=field_data, fields=list(FIELDS),
                      layer=layer, driver="GPKG", geometry_type="Polygon", crs=crs.to_wkt(),
                      append=path.exists())
