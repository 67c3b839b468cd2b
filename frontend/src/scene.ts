// Scene page: the scene's XYZ tiles on an OpenLayers map, fitted to its footprint, and the
// "Examples & search" panel (scene-panel.ts) that draws examples, runs searches and shows detections.
import "ol/ol.css";
import "./style.css";
import Feature from "ol/Feature";
import Map from "ol/Map";
import View from "ol/View";
import GeoJSON from "ol/format/GeoJSON";
import TileLayer from "ol/layer/Tile";
import VectorLayer from "ol/layer/Vector";
import OSM from "ol/source/OSM";
import VectorSource from "ol/source/Vector";
import XYZ from "ol/source/XYZ";
import { Stroke, Style } from "ol/style";
import { ScaleLine, defaults as defaultControls } from "ol/control";
import { toLonLat, transformExtent } from "ol/proj";
import type { Scene } from "./api";
import { setupSearchPanel } from "./scene-panel";
import { footprintExtentLonLat, setupSceneDisplay } from "./scene-display";

declare global {
  interface Window {
    /** The scene map, for tests and the browser console. */
    __georeviewMap?: Map;
  }
}

const scene = JSON.parse(document.getElementById("scene-data")!.textContent!) as Scene;
const target = document.getElementById("map") as HTMLElement;

const footprint = scene.footprint
  ? (new GeoJSON().readFeature(
      { type: "Feature", geometry: scene.footprint, properties: {} },
      { dataProjection: "EPSG:4326", featureProjection: "EPSG:3857" },
    ) as Feature)
  : null;

// The tile layer counts loads so that tests (and curious users) can see the imagery arrived.
let tilesLoaded = 0;
let tilesFailed = 0;
const imagery = scene.tile_url
  ? new XYZ({
      url: scene.tile_url,
      tileSize: 256,
      maxZoom: (scene.max_zoom ?? 18) + 2,
      crossOrigin: "anonymous",
      transition: 0,
    })
  : null;
imagery?.on("tileloadend", () => {
  tilesLoaded += 1;
  target.dataset.tilesLoaded = String(tilesLoaded);
});
imagery?.on("tileloaderror", () => {
  tilesFailed += 1;
  target.dataset.tilesFailed = String(tilesFailed);
});

const layers = [];
// An OSM basemap only when the deployment allows outside requests; offline installs show the scene alone.
if (document.body.dataset.basemap === "osm") layers.push(new TileLayer({ source: new OSM() }));
// The real extent: a footprint split at the antimeridian would otherwise span the whole world.
const lonLatExtent = footprintExtentLonLat(scene.footprint);
const sceneExtent = lonLatExtent ? transformExtent(lonLatExtent, "EPSG:4326", "EPSG:3857") : undefined;
if (imagery) layers.push(new TileLayer({ source: imagery, extent: sceneExtent }));
if (footprint) {
  layers.push(
    new VectorLayer({
      source: new VectorSource({ features: [footprint] }),
      style: new Style({ stroke: new Stroke({ color: "#ffcc00", width: 2 }) }),
    }),
  );
}

const view = new View({ maxZoom: (scene.max_zoom ?? 18) + 2, constrainResolution: false });
const map = new Map({ target, layers, view, controls: defaultControls().extend([new ScaleLine()]) });
if (sceneExtent) view.fit(sceneExtent, { padding: [24, 24, 24, 24] });
else view.setCenter([0, 0]);

const pos = document.getElementById("cursor-pos");
const posHint = pos?.textContent ?? "";
target.addEventListener("pointerleave", () => pos && (pos.textContent = posHint));
map.on("pointermove", (e) => {
  if (!pos) return;
  const [lon, lat] = toLonLat(e.coordinate);
  pos.textContent = `${lat.toFixed(6)}, ${lon.toFixed(6)} · zoom ${view.getZoom()?.toFixed(1)}`;
});
window.__georeviewMap = map;
const panel = document.getElementById("search-panel");
if (panel && scene.status === "ready") setupSearchPanel(map, scene, panel, sceneExtent);
const sidebar = document.querySelector<HTMLElement>(".sidebar");
if (sidebar && scene.status === "ready") void setupSceneDisplay(scene, imagery, sidebar, panel?.dataset.role === "manager");
target.dataset.ready = "1";
