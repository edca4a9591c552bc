// Reference for tests/python/bench_imports.py: one IFC file through web-ifc (WASM) with node.
// bench_imports.py copies this file, package.json and package-lock.json to .local/bench-webifc/
// (ignored by git) and runs `npm ci` there, so no node_modules lands in the work tree. By hand:
//
//     mkdir -p .local/bench-webifc
//     cp tests/python/{package.json,package-lock.json,webifc_reference.mjs} .local/bench-webifc/
//     (cd .local/bench-webifc && npm ci) && node .local/bench-webifc/webifc_reference.mjs FILE.ifc
//
// Opens the model and streams every mesh (IfcAPI.OpenModel + StreamAllMeshes), fetching each
// placed geometry to count its triangles, as a viewer would. Prints one JSON line: the seconds
// for WASM start-up, reading the file, OpenModel (parse) and StreamAllMeshes (geometry), the
// counts, and the process's peak RSS (VmHWM). One file a process, so the peak is that file's.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";

const require = createRequire(import.meta.url);
const WebIFC = require("web-ifc");
const version = JSON.parse(
  readFileSync(new URL("node_modules/web-ifc/package.json", import.meta.url), "utf8"),
).version;

function peakRssKib() {
  const status = readFileSync("/proc/self/status", "ascii");
  const line = status.split("\n").find((l) => l.startsWith("VmHWM:"));
  return line ? Number(line.split(/\s+/)[1]) : 0;
}

const path = process.argv[2];
if (!path) {
  console.error("usage: node webifc_reference.mjs FILE.ifc");
  process.exit(2);
}

let t = performance.now();
const api = new WebIFC.IfcAPI();
await api.Init();
const init = (performance.now() - t) / 1000;

t = performance.now();
const data = new Uint8Array(readFileSync(path));
const read = (performance.now() - t) / 1000;

t = performance.now();
const model = api.OpenModel(data, { COORDINATE_TO_ORIGIN: false });
const open = (performance.now() - t) / 1000;

t = performance.now();
let meshes = 0;
let geometries = 0;
let triangles = 0;
let vertices = 0;
api.StreamAllMeshes(model, (mesh) => {
  meshes += 1;
  const placed = mesh.geometries;
  for (let i = 0; i < placed.size(); i++) {
    const geometry = api.GetGeometry(model, placed.get(i).geometryExpressID);
    geometries += 1;
    triangles += geometry.GetIndexDataSize() / 3;
    vertices += geometry.GetVertexDataSize() / 6; // x y z nx ny nz
    geometry.delete();
  }
});
const stream = (performance.now() - t) / 1000;
api.CloseModel(model);

console.log(
  JSON.stringify({
    version,
    file: path,
    bytes: data.length,
    init_s: init,
    read_s: read,
    open_s: open,
    stream_s: stream,
    meshes,
    geometries,
    triangles,
    vertices,
    peak_rss_kib: peakRssKib(),
  }),
);
