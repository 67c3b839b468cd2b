"""Writes of the domain core: projects, classes, scenes and their ingest, annotations."""

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import rasterio
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.gis.geos import GEOSGeometry, Polygon
from django.db import transaction
from django.db.models import Max
from rasterio.crs import CRS

from . import geo, storage
from .cog import convert_to_cog
from .errors import DomainError, IngestError
from .models import Annotation, Membership, ObjectClass, Project, Role, Scene, SceneStatus
from .permissions import Action, require
from .raster_checks import RasterLimits, check_header, check_rgb_bands, default_rgb_bands

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
        ObjectClass(project=project, name=n, color=c, index=i) for i, (n, c) in enumerate(DEFAULT_CLASSES)
    )
    return project


def membership_set(*, project: Project, user: AbstractBaseUser, role: str) -> Membership:
    """Give a user a role in a project (adds or changes the membership)."""
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership


@transaction.atomic
def object_class_create(*, project: Project, role: str | None, name: str, color: str) -> ObjectClass:
    """Add a class with the next free stable index."""
    require(role, Action.EDIT_CLASSES)
    next_index = (project.classes.aggregate(m=Max("index"))["m"] or -1) + 1
    return ObjectClass.objects.create(project=project, name=name, color=color, index=next_index)


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
    path = storage.store_uploaded_file(uploaded, scene_dir)
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
    """Validate the upload, convert it to a COG, and fill in footprint, metadata and stretch.

    On any failure the scene ends in status `failed` with a message saying what to do; the upload is
    kept and no other row changes. Re-running replaces the scene's own COG and metadata.
    """
    Scene.objects.filter(pk=scene.pk).update(status=SceneStatus.PROCESSING, error="")
    scene.refresh_from_db()
    src = storage.absolute(scene.upload_path)
    cog_path = src.parent / storage.COG_NAME
    try:
        progress(0.0, "Checking the file")
        header = check_header(src, raster_limits())
        rgb_src = check_rgb_bands(header, tuple(rgb_bands)) if rgb_bands else default_rgb_bands(header)
        result = convert_to_cog(src, cog_path, header, lambda f, m: progress(0.02 + 0.96 * f, m))
        crs = CRS.from_user_input(header.crs)
        transform = geo.transform_from_gdal(header.geotransform)
        ring = geo.footprint_ring_lonlat(crs, transform, header.width, header.height)
        footprint = Polygon(ring, srid=4326)
        if not footprint.valid:
            footprint = footprint.buffer(0)
        gsd = geo.ground_resolution_m(crs, transform, header.width, header.height)
        native = geo.native_zoom(gsd, footprint.centroid.y)
    except DomainError as exc:
        _scene_fail(scene, exc.message, cog_path)
        raise
    except Exception as exc:
        log.exception("ingest of scene %s failed", scene.pk)
        _scene_fail(scene, f"Unexpected error while ingesting ({exc}). The upload is kept: retry the ingest, "
                    "and report the problem if it happens again.", cog_path)
        raise IngestError(scene.error) from exc
    cog_index = {src_band: i + 1 for i, src_band in enumerate(header.data_bands)}
    scene.cog_path = storage.relative(cog_path)
    scene.footprint = footprint
    scene.crs = header.crs
    scene.geotransform = list(header.geotransform)
    scene.width, scene.height = header.width, header.height
    scene.band_count = len(header.data_bands)
    scene.dtype = header.dtype
    scene.gsd_m = gsd
    scene.rgb_bands = [cog_index[b] for b in rgb_src]
    scene.stretch = result.stretch
    scene.max_zoom = native
    scene.min_zoom = geo.overview_zoom(native, header.width, header.height)
    scene.status = SceneStatus.READY
    scene.error = ""
    scene.save()
    progress(1.0, f"Ready: {header.width} x {header.height} px, {gsd:.2f} m per pixel")
    return scene


def _scene_fail(scene: Scene, message: str, cog_path: Path) -> None:
    """Mark a scene failed and remove any partial output."""
    cog_path.unlink(missing_ok=True)
    Scene.objects.filter(pk=scene.pk).update(status=SceneStatus.FAILED, error=message, cog_path="")
    scene.refresh_from_db()


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
