"""Label files in, plain records out: one reader per format (GeoJSON, GeoPackage, zipped Shapefile, YOLO, COCO).

Readers know nothing of projects: map formats give shapely geometries in EPSG:4326, image formats give pixel
geometries with the image they belong to (and its georeferencing when the file carries one). Matching images to
scenes, classes to the project and geometries to scenes is datasets.import_services' work.
"""

import csv
import io
import json
import math
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from annotate.errors import DomainError

# Attribute names that hold an object's class in third-party files, most specific first (matched case-insensitively).
CLASS_FIELDS = ("class", "class_name", "classname", "label", "category", "category_name", "type", "name")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
GEOTIFF_SUFFIXES = {".tif", ".tiff"}
VECTOR_SUFFIXES = {".geojson": "geojson", ".json": "geojson", ".gpkg": "gpkg"}


class ImportFileError(DomainError):
    """A label file that cannot be read; the message says what is wrong and what to upload instead."""

    code = "import_unreadable"


@dataclass(frozen=True)
class MapRecord:
    """One feature of a map format: its class name and geometry (shapely, EPSG:4326, lon/lat)."""

    item: str  # where it came from, for the report: "objects.gpkg layer roads feature 12"
    class_name: str | None
    geometry: object  # shapely geometry or None when the feature has none


@dataclass(frozen=True)
class ImageRef:
    """An image a label file refers to: its path in the archive, pixel size and georeferencing when known."""

    path: str  # as written in the archive or the COCO file
    width: int | None = None
    height: int | None = None
    crs: str | None = None  # WKT or EPSG:n of a georeferenced image
    geotransform: tuple | None = None  # GDAL order, of the image's own pixel grid

    @property
    def stem(self) -> str:
        """The file name without folders and its last suffix ("a.b,c.png" -> "a.b,c")."""
        return PurePosixPath(self.path).stem


@dataclass(frozen=True)
class ImageRecord:
    """One label of an image format: class name and a pixel geometry (shapely, x = column, y = row)."""

    item: str
    class_name: str | None
    geometry: object
    image: ImageRef
    normalised: bool = False  # YOLO: 0..1 of the image's width and height


@dataclass
class ReadResult:
    """A whole file read: its format, the records and what was noticed on the way."""

    format: str
    records: list = field(default_factory=list)
    crs: str | None = None
    class_field: str | None = None
    layers: list[str] = field(default_factory=list)
    images: list[ImageRef] = field(default_factory=list)
    chips: dict[str, dict] = field(default_factory=dict)  # chips.csv rows by image file name
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (reason code, item, message)


# ------------------------------------------------------------------------------------------ format detection
def detect_format(path: Path) -> str:
    """geojson | gpkg | shapefile | yolo | coco, by the file's content (a zip by what it holds)."""
    suffix = path.suffix.lower()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/") and "__MACOSX" not in n]
        lower = [n.lower() for n in names]
        if any(n.endswith(".shp") for n in lower):
            return "shapefile"
        if any(n.endswith(".json") and _looks_coco_name(n) for n in lower) and not any(
            n.endswith("data.yaml") for n in lower
        ):
            return "coco"
        if any(n.endswith(".txt") and "labels" in PurePosixPath(n).parts[:-1] for n in lower) or any(
            n.endswith("data.yaml") for n in lower
        ):
            return "yolo"
        if any(n.endswith(".gpkg") for n in lower):
            return "gpkg"
        if any(n.endswith(".geojson") for n in lower):
            return "geojson"
        raise ImportFileError(
            "The zip holds no labels this application reads: expected a Shapefile (.shp with .shx/.dbf/.prj), "
            "a YOLO dataset (labels/*.txt with data.yaml), a COCO dataset (annotations/*.json) or a GeoJSON/GPKG.",
            detail={"files": names[:20]},
        )
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head.startswith(b"SQLite format 3"):
        return "gpkg"
    if suffix in (".json", ".geojson") or head.lstrip()[:1] in (b"{", b"["):
        try:
            with open(path, "rb") as fh:
                doc = json.load(fh)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ImportFileError(f"The file is not valid JSON ({exc}); upload a GeoJSON or COCO file.") from exc
        if isinstance(doc, dict) and "images" in doc and "annotations" in doc:
            return "coco"
        if isinstance(doc, dict) and doc.get("type") in ("FeatureCollection", "Feature"):
            return "geojson"
        raise ImportFileError(
            "The JSON file is neither GeoJSON (a FeatureCollection) nor COCO (images and annotations)."
        )
    raise ImportFileError(
        "Unknown label file: upload a GeoJSON, a GeoPackage (.gpkg), a zipped Shapefile, a zipped YOLO dataset "
        "or a COCO file (JSON or zipped with its images)."
    )


def _looks_coco_name(name: str) -> bool:
    return "annotations/" in name or "instances" in PurePosixPath(name).name


def read_labels(path: Path) -> ReadResult:
    """Read a label file of any supported format."""
    fmt = detect_format(path)
    reader = {"geojson": read_vector, "gpkg": read_vector, "shapefile": read_vector, "yolo": read_yolo,
              "coco": read_coco}[fmt]
    result = reader(path, fmt)
    result.format = fmt
    return result


# ------------------------------------------------------------------------------------------ map formats (OGR)
def _vector_source(path: Path, fmt: str) -> str:
    """What OGR opens: the file, or the first .shp/.gpkg/.geojson inside a zip (through /vsizip/)."""
    if not zipfile.is_zipfile(path):
        return str(path)
    wanted = {"shapefile": (".shp",), "gpkg": (".gpkg",), "geojson": (".geojson", ".json")}[fmt]
    with zipfile.ZipFile(path) as zf:
        inner = sorted(n for n in zf.namelist() if n.lower().endswith(wanted) and "__MACOSX" not in n)
    if not inner:
        raise ImportFileError(f"The zip holds no {fmt} file.")
    if fmt == "shapefile":
        # A folder of shapefiles is one source with a layer per file.
        folder = str(PurePosixPath(inner[0]).parent)
        return f"/vsizip/{path}" + ("" if folder == "." else f"/{folder}")
    return f"/vsizip/{path}/{inner[0]}"


def _class_field(fields: list[str]) -> str | None:
    by_lower = {f.lower(): f for f in fields}
    return next((by_lower[name] for name in CLASS_FIELDS if name in by_lower), None)


def _class_text(value) -> str | None:
    """A class value as text: numbers written as `1.0` become `1`; blank is None."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    text = str(value).strip()
    return re.sub(r"^(-?\d+)\.0+$", r"\1", text) or None


def read_vector(path: Path, fmt: str) -> ReadResult:
    """GeoJSON, GeoPackage or zipped Shapefile through OGR (pyogrio), every layer, reprojected to EPSG:4326."""
    import pyogrio
    import shapely
    from pyogrio.errors import DataSourceError
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    from rasterio.warp import transform_geom

    source = _vector_source(path, fmt)
    result = ReadResult(format=fmt)
    try:
        # Tables without geometry (a GeoPackage's attribute tables) hold no labels.
        layers = [str(row[0]) for row in pyogrio.list_layers(source) if row[1] not in (None, "None", "")]
    except (DataSourceError, OSError) as exc:
        raise ImportFileError(f"OGR cannot open the {fmt} file ({exc}); check that it is complete.") from exc
    result.layers = layers
    crs_seen = []
    for layer in layers:
        try:
            meta, _fids, geoms, values = pyogrio.raw.read(source, layer=layer)
        except (DataSourceError, OSError, ValueError) as exc:
            raise ImportFileError(f"OGR cannot read layer {layer!r} ({exc}).") from exc
        if geoms is None:
            continue
        fields = [str(f) for f in meta["fields"]]
        class_field = _class_field(fields)
        result.class_field = result.class_field or class_field
        column = values[fields.index(class_field)] if class_field else None
        crs_text = meta.get("crs")
        if not crs_text and fmt == "shapefile":
            raise ImportFileError(
                f"The Shapefile layer {layer!r} has no .prj file, so its coordinates cannot be placed on the map; "
                "zip the .prj with the .shp, .shx and .dbf."
            )
        try:
            crs = CRS.from_user_input(crs_text) if crs_text else CRS.from_epsg(4326)
        except CRSError as exc:
            raise ImportFileError(f"Layer {layer!r} has a CRS this server does not know ({crs_text}).") from exc
        crs_seen.append(crs.to_string())
        reproject = crs != CRS.from_epsg(4326)
        prefix = f"{Path(path).name}" + (f" layer {layer}" if len(layers) > 1 else "")
        for i, wkb in enumerate(geoms):
            item = f"{prefix} feature {i + 1}"
            name = _class_text(column[i]) if column is not None else None
            geometry = shapely.from_wkb(wkb) if wkb is not None else None
            if geometry is not None and reproject and not geometry.is_empty:
                try:
                    geometry = shapely.geometry.shape(transform_geom(crs, "EPSG:4326", geometry.__geo_interface__))
                except Exception as exc:  # PROJ refuses coordinates outside the CRS's domain
                    result.skipped.append(("unreadable_geometry", item, f"cannot be reprojected to EPSG:4326 ({exc})"))
                    continue
            result.records.append(MapRecord(item=item, class_name=name, geometry=geometry))
    result.crs = ", ".join(sorted(set(crs_seen))) or None
    return result


# ------------------------------------------------------------------------------------------ image formats
def _zip_members(zf: zipfile.ZipFile) -> list[str]:
    return [n for n in zf.namelist() if not n.endswith("/") and "__MACOSX" not in n]


def _image_size_and_georef(data: bytes, name: str) -> ImageRef:
    """Read an image's size (and a GeoTIFF's transform and CRS) from its bytes."""
    if PurePosixPath(name).suffix.lower() in GEOTIFF_SUFFIXES:
        import rasterio
        from rasterio.io import MemoryFile

        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), MemoryFile(data) as mem, mem.open() as ds:
            georef = ds.crs is not None and not ds.transform.is_identity
            return ImageRef(
                path=name, width=ds.width, height=ds.height, crs=ds.crs.to_wkt() if georef else None,
                geotransform=tuple(ds.transform.to_gdal()) if georef else None,
            )
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return ImageRef(path=name, width=im.width, height=im.height)


def _images_in(zf: zipfile.ZipFile) -> dict[str, ImageRef]:
    """Images of an archive by path, with their size and georeferencing (headers only are decoded)."""
    images = {}
    for name in _zip_members(zf):
        if PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES:
            try:
                images[name] = _image_size_and_georef(zf.read(name), name)
            except Exception:  # an unreadable image: its labels are matched by name (and reported if they fail)
                images[name] = ImageRef(path=name)
    return images


def read_chips_csv(text: str) -> dict[str, dict]:
    """Our exports' chips.csv (file, scene_id, crs, chip geotransform ...) by image file name."""
    rows = {}
    for row in csv.DictReader(io.StringIO(text)):
        # A row with more cells than the header (an unquoted comma) keeps its named cells; the extras are dropped.
        row = {k.strip().lower(): v.strip() for k, v in row.items() if isinstance(k, str) and isinstance(v, str)}
        name = row.get("file") or row.get("image") or row.get("file_name")
        if not name:
            continue
        gt = _geotransform_of(row)
        rows[PurePosixPath(name).name] = {
            "scene_id": int(float(row["scene_id"])) if row.get("scene_id") else None,
            "scene_name": row.get("scene_name", ""),
            "crs": row.get("crs") or None,
            "geotransform": gt,
            "width": int(float(row["width"])) if row.get("width") else None,
            "height": int(float(row["height"])) if row.get("height") else None,
            "window": _window_of(row),
        }
    return rows


def _geotransform_of(row: dict) -> tuple | None:
    """The GDAL geotransform of a chips.csv row: one column (JSON list or separated numbers) or six columns."""
    text = row.get("geotransform") or row.get("transform")
    if text:
        numbers = [float(v) for v in re.split(r"[\s,;\[\]()]+", text) if v]
        return tuple(numbers) if len(numbers) == 6 else None
    for keys in (("gt0", "gt1", "gt2", "gt3", "gt4", "gt5"), ("x0", "dx", "rx", "y0", "ry", "dy")):
        if all(row.get(k) for k in keys):
            return tuple(float(row[k]) for k in keys)
    return None


def _window_of(row: dict) -> tuple | None:
    """The chip's native window in the scene (col_off, row_off, width, height) when the row gives one."""
    def number(*keys):
        return next((float(row[k]) for k in keys if row.get(k)), None)

    col, r0 = number("col_off", "window_col_off"), number("row_off", "window_row_off")
    if col is None or r0 is None:
        return None
    return col, r0, number("window_width", "native_width", "win_width"), number("window_height", "native_height",
                                                                                  "win_height")


def _chips_of(zf: zipfile.ZipFile) -> dict[str, dict]:
    """Every chips.csv of an archive (several exports zipped together) merged, by image file name."""
    rows: dict[str, dict] = {}
    for name in _zip_members(zf):
        if PurePosixPath(name).name.lower() == "chips.csv":
            rows.update(read_chips_csv(zf.read(name).decode("utf-8-sig")))
    return rows


def _yolo_names(zf: zipfile.ZipFile) -> dict[int, str]:
    """Class index -> name from data.yaml (`names` as a list or a mapping), else classes.txt / obj.names."""
    import yaml

    members = _zip_members(zf)
    for name in members:
        if PurePosixPath(name).name.lower() in ("data.yaml", "data.yml", "dataset.yaml"):
            try:
                doc = yaml.safe_load(zf.read(name)) or {}
            except yaml.YAMLError as exc:
                raise ImportFileError(f"{name} is not valid YAML ({exc}).") from exc
            names = doc.get("names") if isinstance(doc, dict) else None
            if isinstance(names, list):
                return {i: str(n) for i, n in enumerate(names)}
            if isinstance(names, dict):
                return {int(float(k)): str(v) for k, v in names.items()}
    for name in members:
        if PurePosixPath(name).name.lower() in ("classes.txt", "obj.names"):
            lines = zf.read(name).decode("utf-8-sig").splitlines()
            return {i: line.strip() for i, line in enumerate(lines) if line.strip()}
    return {}


def _label_image(label_path: str, images: dict[str, ImageRef]) -> ImageRef:
    """The image of a YOLO label file: same relative path under images/ (any suffix), else the same stem."""
    parts = list(PurePosixPath(label_path).parts)
    stem = PurePosixPath(label_path).stem
    if "labels" in parts:
        i = len(parts) - 1 - parts[::-1].index("labels")
        parts[i] = "images"
    base = str(PurePosixPath(*parts).with_suffix(""))
    for path, ref in images.items():
        if str(PurePosixPath(path).with_suffix("")) == base:
            return ref
    for path, ref in images.items():
        if PurePosixPath(path).stem == stem:
            return ref
    return ImageRef(path=f"{stem}.png")  # not in the archive: matched to a scene by name, at the scene's size


def read_yolo(path: Path, fmt: str = "yolo") -> ReadResult:
    """A zipped YOLO dataset: labels/**/*.txt (detect `c cx cy w h` or segment `c x1 y1 ...`, normalised)."""
    from shapely.geometry import Polygon, box

    result = ReadResult(format="yolo")
    with zipfile.ZipFile(path) as zf:
        names = _yolo_names(zf)
        images = _images_in(zf)
        result.chips = _chips_of(zf)
        result.images = list(images.values())
        labels = sorted(n for n in _zip_members(zf) if n.lower().endswith(".txt")
                        and PurePosixPath(n).name.lower() not in ("classes.txt", "obj.names", "readme.txt"))
        for label_path in labels:
            image = _label_image(label_path, images)
            text = zf.read(label_path).decode("utf-8-sig", errors="replace")
            for n, line in enumerate(text.splitlines(), start=1):
                item = f"{label_path} line {n}"
                values = line.replace(",", " ").split()
                if not values:
                    continue
                try:
                    numbers = [float(v) for v in values]
                except ValueError:
                    result.skipped.append(("unreadable_line", item, f"not numbers: {line[:80]!r}"))
                    continue
                if not numbers[0].is_integer() or numbers[0] < 0:
                    result.skipped.append(("unreadable_line", item, f"class id {values[0]!r} is not a whole number"))
                    continue
                index = int(numbers[0])
                coords = numbers[1:]
                if len(coords) == 4:
                    cx, cy, w, h = coords
                    geometry = box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                elif len(coords) >= 6 and len(coords) % 2 == 0:
                    geometry = Polygon(list(zip(coords[0::2], coords[1::2], strict=True)))
                else:
                    result.skipped.append(
                        ("unreadable_line", item, f"{len(coords)} coordinates: neither a box (4) nor a polygon")
                    )
                    continue
                class_name = names.get(index, str(index))
                result.records.append(
                    ImageRecord(item=item, class_name=class_name, geometry=geometry, image=image, normalised=True)
                )
    return result


def _coco_docs(path: Path) -> Iterator[tuple[str, dict, dict[str, ImageRef], dict]]:
    """(file name, COCO document, images in the archive, chips.csv rows) for each annotation file."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            yield path.name, json.load(fh), {}, {}
        return
    with zipfile.ZipFile(path) as zf:
        images = _images_in(zf)
        chips = _chips_of(zf)
        for name in sorted(_zip_members(zf)):
            if name.lower().endswith(".json"):
                try:
                    doc = json.loads(zf.read(name))
                except ValueError as exc:
                    raise ImportFileError(f"{name} is not valid JSON ({exc}).") from exc
                if isinstance(doc, dict) and "images" in doc and "annotations" in doc:
                    yield name, doc, images, chips


def _coco_geometry(ann: dict):
    """A COCO annotation's shape in pixels: its polygons (several -> a multipolygon), RLE mask, else its bbox."""
    from shapely.geometry import MultiPolygon, Polygon, box

    seg = ann.get("segmentation")
    if isinstance(seg, list) and seg and all(isinstance(p, list) for p in seg):
        polys = [Polygon(list(zip(p[0::2], p[1::2], strict=False))) for p in seg if len(p) >= 6]
        if polys:
            return polys[0] if len(polys) == 1 else MultiPolygon(polys)
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        return _rle_geometry(seg)
    bbox = ann.get("bbox")
    if isinstance(bbox, list) and len(bbox) == 4:
        x, y, w, h = (float(v) for v in bbox)
        return box(x, y, x + w, y + h)
    return None


def _rle_geometry(seg: dict):
    """An RLE mask (pycocotools) as pixel-edge polygons, holes kept."""
    import numpy as np
    from pycocotools import mask as mask_utils
    from rasterio.features import shapes
    from shapely.geometry import shape
    from shapely.ops import unary_union

    rle = dict(seg)
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    mask = mask_utils.decode(rle).astype(np.uint8)
    parts = [shape(g) for g, v in shapes(mask, mask=mask.astype(bool)) if v == 1]
    return unary_union(parts) if parts else None


def read_coco(path: Path, fmt: str = "coco") -> ReadResult:
    """COCO instances (a JSON file, or a zip with annotations/*.json and images)."""
    result = ReadResult(format="coco")
    for doc_name, doc, images, chips in _coco_docs(path):
        result.chips.update(chips)
        by_name = {PurePosixPath(p).name: ref for p, ref in images.items()}
        # Ids as text ("1", 1 and 1.0 alike: third-party writers disagree on the type).
        categories = {_class_text(c.get("id")): str(c.get("name", c.get("id"))) for c in doc.get("categories") or []}
        coco_images = {}
        for im in doc.get("images") or []:
            file_name = str(im.get("file_name", ""))
            ref = by_name.get(PurePosixPath(file_name).name)
            width, height = im.get("width") or (ref and ref.width), im.get("height") or (ref and ref.height)
            coco_images[im.get("id")] = ImageRef(
                path=file_name, width=int(width) if width else None, height=int(height) if height else None,
                crs=ref.crs if ref else None, geotransform=ref.geotransform if ref else None,
            )
        result.images.extend(coco_images.values())
        for n, ann in enumerate(doc.get("annotations") or [], start=1):
            item = f"{doc_name} annotation {ann.get('id', n)}"
            image = coco_images.get(ann.get("image_id"))
            if image is None:
                result.skipped.append(("unknown_image", item, f"image_id {ann.get('image_id')} is not in images"))
                continue
            cat = ann.get("category_id")
            class_name = categories.get(_class_text(cat), _class_text(cat))
            try:
                geometry = _coco_geometry(ann)
            except Exception as exc:  # a malformed polygon or RLE of a third-party file: reported, not fatal
                result.skipped.append(("unreadable_geometry", item, f"segmentation cannot be read ({exc})"))
                continue
            result.records.append(ImageRecord(item=item, class_name=class_name, geometry=geometry, image=image))
    return result
