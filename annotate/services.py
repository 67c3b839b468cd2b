"""Writes of the domain core: projects, classes, scenes and their ingest, annotations."""

import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import rasterio
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.gis.geos import GEOSGeometry, MultiPolygon, Polygon
from django.db import transaction
from rasterio.crs import CRS

from . import geo, storage
from .cog import convert_to_cog, percentile_stretch
from .errors import DomainError, IngestError, InsufficientStorage
from .models import Annotation, Membership, ObjectClass, Project, Role, Scene, SceneStatus
from .permissions import Action, require
from .raster_checks import RasterHeader, RasterLimits, check_header, check_rgb_bands, default_rgb_bands

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]

DEFAULT_CLASSES: tuple[tuple[str, str], ...] = (
    ("Brick Kiln", "#e6194b"),
    ("STP", "#3cb44b"),
    ("Solar Panel", "#4363d8"),
    ("Sheds", "#f58231"),
    ("Metro Shed", "#911eb4"),
    ("Play Ground", "#46f0f0"),
    ("Pond-1", "#f032e6"),
    ("Pond-2", "#bcf60c"),
)


def _no_progress(fraction: float, message: str) -> None:
    """A progress callback that ignores progress."""


# ------------------------------------------------------------------------------------------ projects
@transaction.atomic
def project_create(*, name: str, user: AbstractBaseUser, description: str = "") -> Project:
    """Create a project with its creator as manager and the eight default classes."""
    project = Project.objects.create(name=name, description=description, created_by=user)
    Membership.objects.create(project=project, user=user, role=Role.MANAGER)
    ObjectClass.objects.bulk_create(
        ObjectClass(project=project, name=n, color=c, index=i, position=i) for i, (n, c) in enumerate(DEFAULT_CLASSES)
    )
    return project


def membership_set(*, project: Project, user: AbstractBaseUser, role: str) -> Membership:
    """Give a user a role in a project (adds or changes the membership)."""
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership


# ------------------------------------------------------------------------------------------ scenes
def raster_limits() -> RasterLimits:
    """The configured raster limits."""
    return RasterLimits(
        max_width=settings.RASTER_MAX_WIDTH,
        max_height=settings.RASTER_MAX_HEIGHT,
        max_pixels=settings.RASTER_MAX_PIXELS,
        max_bands=settings.RASTER_MAX_BANDS,
        allowed_dtypes=tuple(settings.RASTER_ALLOWED_DTYPES),
    )


def _scene_name(original_name: str) -> str:
    """A display name from a file name (no directories, no extension)."""
    base = Path(original_name.replace("\\", "/")).name or "scene"
    return (base.rsplit(".", 1)[0] or base)[:255]


def scene_create_from_upload(
    *, project: Project, user: AbstractBaseUser, role: str | None, uploaded, name: str = ""
) -> Scene:
    """Store an uploaded file (already streamed to disk) as a new scene in status `uploaded`."""
    require(role, Action.UPLOAD_SCENE)
    scene_dir = storage.new_scene_dir()
    try:
        path = storage.store_uploaded_file(uploaded, scene_dir)
    except OSError as exc:
        shutil.rmtree(scene_dir, ignore_errors=True)  # a partial copy would hold the space the user lacks
        if storage.is_disk_full(exc):
            raise InsufficientStorage(
                f"The server is out of disk space ({storage.mib(storage.free_bytes(scene_dir))} free), so the "
                "upload was not stored. Tell the administrator to free space on the server's data directory, "
                "then upload again."
            ) from exc
        raise
    original = Path(str(uploaded.name)).name[:255]
    return Scene.objects.create(
        project=project,
        name=(name or _scene_name(original))[:255],
        original_name=original,
        upload_path=storage.relative(path),
        uploaded_by=user,
    )


def scene_create_from_path(*, project: Project, user: AbstractBaseUser | None, source: Path, name: str = "") -> Scene:
    """Copy a local file into the store as a new scene in status `uploaded`."""
    if not source.is_file():
        raise DomainError(f"{source} is not a file.")
    scene_dir = storage.new_scene_dir()
    path = storage.store_local_file(source, scene_dir)
    return Scene.objects.create(
        project=project,
        name=(name or _scene_name(source.name))[:255],
        original_name=source.name[:255],
        upload_path=storage.relative(path),
        uploaded_by=user,
    )


def scene_ingest(*, scene: Scene, rgb_bands: Sequence[int] | None = None, progress: Progress = _no_progress) -> Scene:
    """Validate the upload, convert it to a COG, and fill in footprint, metadata, stretch and warnings.

    A first ingest that fails leaves the scene `failed` with a message saying what to do. A re-ingest of a
    ready scene writes a new COG beside the working one and swaps it in only on success: a failure leaves
    the scene ready, still served from its old COG, with the failure in `error`. The upload is always kept.
    """
    scene.refresh_from_db()
    reingest = scene.status == SceneStatus.READY and bool(scene.cog_path)
    if not reingest:
        Scene.objects.filter(pk=scene.pk).update(status=SceneStatus.PROCESSING, error="")
        scene.refresh_from_db()
    src = storage.absolute(scene.upload_path)
    working = storage.absolute(scene.cog_path) if reingest else None
    for leftover in storage.scene_cogs(src.parent):  # from a worker killed mid-ingest
        if leftover != working:
            leftover.unlink(missing_ok=True)
    cog_path = storage.new_cog_path(src.parent)
    try:
        progress(0.0, "Checking the file")
        header = check_header(src, raster_limits())
        rgb_src = _rgb_choice(header, rgb_bands)
        result = convert_to_cog(src, cog_path, header, lambda f, m: progress(0.02 + 0.96 * f, m))
        stretch, warnings = result.stretch, result.warnings
        if scene.nodata is not None:  # a manager's fill value outlives a re-ingest
            stretch, warnings = _stretch_without(cog_path, header.cog_dtype, scene.nodata, warnings)
        crs = CRS.from_user_input(header.crs)
        transform = geo.transform_from_gdal(header.geotransform)
        footprint, extent = _footprint(crs, transform, header.width, header.height)
        gsd = geo.ground_resolution_m(crs, transform, header.width, header.height)
        native = geo.native_zoom(gsd, (extent[1] + extent[3]) / 2)
    except DomainError as exc:
        _scene_fail(scene, exc.message, cog_path, keep_ready=reingest)
        raise
    except Exception as exc:
        if _out_of_space(exc, src):
            log.warning("ingest of scene %s: the disk is full (%s)", scene.pk, exc)
            _scene_fail(scene, _disk_full_message(src), cog_path, keep_ready=reingest)
            raise InsufficientStorage(scene.error) from exc
        log.exception("ingest of scene %s failed", scene.pk)
        _scene_fail(scene, f"Unexpected error while ingesting ({exc}). The upload is kept: retry the ingest, "
                    "and report the problem if it happens again.", cog_path, keep_ready=reingest)
        raise IngestError(scene.error) from exc
    old_cog = scene.cog_path
    scene.cog_path = storage.relative(cog_path)
    scene.footprint = footprint
    scene.crs = header.crs
    scene.geotransform = list(header.geotransform)
    scene.width, scene.height = header.width, header.height
    scene.band_count = header.cog_band_count
    scene.dtype = header.cog_dtype
    scene.gsd_m = gsd
    scene.rgb_bands = list(rgb_src)
    scene.stretch = scene.stretch_auto = stretch
    scene.warnings = warnings
    scene.max_zoom = native
    scene.min_zoom = geo.overview_zoom(native, header.width, header.height)
    scene.status = SceneStatus.READY
    scene.error = ""
    scene.save()
    if old_cog and old_cog != scene.cog_path:
        # Tile readers already open keep their file handle; new requests open the new COG.
        old_path = storage.absolute(old_cog)
        transaction.on_commit(lambda: old_path.unlink(missing_ok=True))
    progress(1.0, f"Ready: {header.width} x {header.height} px, {gsd:.2f} m per pixel")
    return scene


def _ingest_space_needed(src: Path) -> int:
    """About what an ingest writes: a compressed working copy and the COG, each near the upload's size."""
    return 2 * src.stat().st_size


def _out_of_space(exc: BaseException, src: Path) -> bool:
    """Whether an ingest failed for want of disk space.

    GDAL rarely passes the OS error on: a full disk surfaces as "Write error", "IO error writing tag data" or
    "Error fetching directory count". So any failure counts when the space the conversion needs is not free
    (the partial output is already removed here, so the whole need is compared).
    """
    return storage.is_disk_full(exc) or storage.free_bytes(src.parent) < _ingest_space_needed(src)


def _disk_full_message(src: Path) -> str:
    """What the user is told when the COG did not fit on the disk."""
    return (
        f"The server's disk is full: converting this scene needs about {storage.mib(_ingest_space_needed(src))} "
        f"and {storage.mib(storage.free_bytes(src.parent))} are free in the data directory. The partial output "
        "was removed and the upload is kept: ask the administrator to free space, then retry the ingest."
    )


def _rgb_choice(header: RasterHeader, rgb_bands: Sequence[int] | None) -> tuple[int, int, int]:
    """The COG bands shown as red, green, blue, from the user's source bands (or the file's defaults)."""
    rgb_src = check_rgb_bands(header, tuple(rgb_bands)) if rgb_bands else default_rgb_bands(header)
    if header.palette:
        return 1, 2, 3  # the colour table's red, green and blue, expanded at ingest
    cog_index = {src_band: i + 1 for i, src_band in enumerate(header.data_bands)}
    return cog_index[rgb_src[0]], cog_index[rgb_src[1]], cog_index[rgb_src[2]]


def _stretch_without(cog_path: Path, dtype: str, nodata: float, warnings: list[dict]):
    """The automatic stretch measured without a fill value, and the warnings less those that named it."""
    stretch, fill_warnings = percentile_stretch(cog_path, dtype, nodata=nodata)
    others = [w for w in warnings if w["code"] not in ("fill_value", "unmasked_collar")]
    return stretch, others + fill_warnings


def _footprint(crs: CRS, transform, width: int, height: int) -> tuple[GEOSGeometry, tuple[float, ...]]:
    """The scene's EPSG:4326 footprint (a MultiPolygon only when split at the antimeridian) and its real extent."""
    parts, extent = geo.footprint_parts_lonlat(crs, transform, width, height)
    polygons = []
    for ring in parts:
        polygon = Polygon(ring, srid=4326)
        if not polygon.valid:
            polygon = polygon.buffer(0)
        polygons.extend(polygon if polygon.geom_type == "MultiPolygon" else [polygon])
    if len(polygons) == 1:
        return polygons[0], extent
    return MultiPolygon(polygons, srid=4326), extent


def scene_extent(scene: Scene) -> list[float] | None:
    """The scene's real lon/lat extent [west, south, east, north]; east > 180 for a scene across the antimeridian."""
    if scene.footprint is None:
        return None
    west, south, east, north = scene.footprint.extent
    if scene.footprint.geom_type == "MultiPolygon" and west <= -180 + 1e-9 and east >= 180 - 1e-9:
        # Parts on both sides of 180: the west part continues the east part, past 180.
        west = min(p.extent[0] for p in scene.footprint if p.extent[0] > -180 + 1e-9)
        east = max(p.extent[2] + 360 for p in scene.footprint if p.extent[0] <= -180 + 1e-9)
    return [west, south, east, north]


def _scene_fail(scene: Scene, message: str, cog_path: Path, *, keep_ready: bool) -> None:
    """Remove any partial output; a ready scene stays ready with the message, any other is marked failed."""
    cog_path.unlink(missing_ok=True)
    cog_path.with_name(cog_path.stem + ".partial.tif").unlink(missing_ok=True)
    if keep_ready:
        Scene.objects.filter(pk=scene.pk).update(error=f"The last re-ingest failed; the scene is unchanged. {message}")
    else:
        Scene.objects.filter(pk=scene.pk).update(status=SceneStatus.FAILED, error=message, cog_path="")
    scene.refresh_from_db()


_UNSET = object()


def scene_display_update(*, scene: Scene, role: str | None, nodata=_UNSET, stretch=_UNSET) -> Scene:
    """Set a ready scene's fill value and display stretch (None: back to automatic); tiles change at once.

    `stretch` is a [low, high] per COG band, already validated by the caller's input serializer. A new
    nodata measures the automatic stretch again without it.
    """
    require(role, Action.EDIT_PROJECT)
    if scene.status != SceneStatus.READY:
        raise DomainError(f"Scene {scene.name!r} is {scene.status}; its display can be set once it is ready.")
    # Scenes ingested before stretch_auto existed show their measured stretch.
    custom = scene.stretch_auto is not None and scene.stretch != scene.stretch_auto
    if nodata is not _UNSET and nodata != scene.nodata:
        path = storage.absolute(scene.cog_path)
        auto, warnings = percentile_stretch(path, scene.dtype)
        if nodata is not None:
            auto, warnings = _stretch_without(path, scene.dtype, nodata, warnings)
        scene.nodata, scene.stretch_auto = nodata, auto
        scene.warnings = [w for w in scene.warnings if w["code"] not in ("fill_value", "unmasked_collar")] + [
            w for w in warnings if w["code"] in ("fill_value", "unmasked_collar")
        ]
        if not custom:
            scene.stretch = auto
    if stretch is not _UNSET:
        if stretch is not None and len(stretch) != scene.band_count:
            raise DomainError(f"Give a [low, high] for each of the scene's {scene.band_count} bands.")
        if stretch is not None:
            scene.stretch = [list(map(float, pair)) for pair in stretch]
        elif scene.stretch_auto is not None:
            scene.stretch = scene.stretch_auto
    # updated_at moves, and the stretch is part of the tiles' style: both change the tiles' ETags.
    scene.save(update_fields=["nodata", "stretch", "stretch_auto", "warnings", "updated_at"])
    return scene


def scene_delete(*, scene: Scene, role: str | None) -> None:
    """Delete a scene, its rows and its files."""
    require(role, Action.DELETE_SCENE)
    upload_path = scene.upload_path
    scene.delete()
    transaction.on_commit(lambda: storage.remove_scene_dir(upload_path))


def scene_cog_dataset_info(scene: Scene) -> dict:
    """Basic facts read back from the stored COG (for diagnostics)."""
    with rasterio.open(storage.absolute(scene.cog_path)) as ds:
        return {"overviews": ds.overviews(1), "blocks": ds.block_shapes[0], "compress": ds.compression}


# ------------------------------------------------------------------------------------------ annotations
def valid_polygon(geometry: GEOSGeometry) -> Polygon:
    """A valid EPSG:4326 polygon from user input, or a DomainError that says what is wrong."""
    if geometry.srid not in (None, 4326):
        geometry = geometry.transform(4326, clone=True)
    geometry.srid = 4326
    if geometry.geom_type != "Polygon":
        raise DomainError(f"A polygon is required (got {geometry.geom_type}).")
    if geometry.empty:
        raise DomainError("The polygon is empty; draw at least three distinct corners.")
    # Validity first: a self-intersecting bow-tie has zero signed area and would be misreported below.
    if not geometry.valid:
        raise DomainError(f"The polygon is invalid ({geometry.valid_reason}); redraw it without self-intersections.")
    if geometry.area == 0:
        raise DomainError("The polygon has no area; draw at least three distinct corners.")
    return geometry


def annotation_create(
    *, scene: Scene, object_class: ObjectClass, geometry: GEOSGeometry, author: AbstractBaseUser, role: str | None
) -> Annotation:
    """Save an example polygon drawn on a ready scene."""
    require(role, Action.ANNOTATE)
    if object_class.project_id != scene.project_id:
        raise DomainError("The class belongs to another project.")
    polygon = valid_polygon(geometry)
    if scene.footprint is not None and not scene.footprint.intersects(polygon):
        raise DomainError("The polygon lies outside the scene's footprint.")
    return Annotation.objects.create(scene=scene, object_class=object_class, geometry=polygon, author=author)


def annotation_update(
    *, annotation: Annotation, actor: AbstractBaseUser, role: str | None, object_class: ObjectClass | None = None,
    geometry: GEOSGeometry | None = None,
) -> Annotation:
    """Change an example's class and/or outline: its author (who may still draw), or a manager.

    The object index notices a new outline by its geometry digest and reads the class through the annotation,
    so the next search uses the edited example, never a stale vector.
    """
    require(role, Action.ANNOTATE)
    if annotation.author_id != actor.pk:
        require(role, Action.EDIT_PROJECT)
    fields = []
    if object_class is not None:
        if object_class.project_id != annotation.scene.project_id:
            raise DomainError("The class belongs to another project.")
        annotation.object_class = object_class
        fields.append("object_class")
    if geometry is not None:
        polygon = valid_polygon(geometry)
        scene = annotation.scene
        if scene.footprint is not None and not scene.footprint.intersects(polygon):
            raise DomainError("The polygon lies outside the scene's footprint.")
        annotation.geometry = polygon
        fields.append("geometry")
    if fields:
        annotation.save(update_fields=fields)
    return annotation


def membership_last_class_set(*, membership: Membership, object_class: ObjectClass | None) -> Membership:
    """Remember the class a member draws with in a project (None forgets it); any member may set their own."""
    if object_class is not None and object_class.project_id != membership.project_id:
        raise DomainError("The class belongs to another project.")
    membership.last_class = object_class
    membership.save(update_fields=["last_class"])
    return membership
