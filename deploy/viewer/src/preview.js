// Headless preview page for strata's preview worker.
//
// The worker opens preview.html in Chromium (WebDriver), waits for
// window.strataPreview.ready, then calls
//
//   await window.strataPreview.render({
//     serverUrl, projectId, objectId, token,  // token may be empty for public projects
//     width = 700, height = 400, angles = 24, timeoutMs = 60000,
//     ao = false, accumulationFrames = 4,     // optional: ambient occlusion (slow)
//   })
//
// which resolves to {screenshots: [PNG data URLs, one per angle], loadMs, renderMs}
// (angle i is the zoom-extents view rotated by i * 2π/angles in azimuth) or rejects
// with an Error whose message starts with what failed: "object not found: ...",
// "access denied ...", "missing child objects: ...", "network error ...",
// "no geometry: ...", "WebGL failure: ...", "timed out after N ms while ...",
// "render: ..." (bad options). One Viewer is created lazily, by the first call, and
// reused: every render starts with viewer.unloadAll(), so a page can render many
// versions in a row. Calls are serialised (a second call waits for the first).
//
// Objects are fetched by @speckle/objectloader2 without its IndexedDB cache:
//   GET  {serverUrl}/objects/{projectId}/{objectId}/single
//   POST {serverUrl}/api/v2/projects/{projectId}/object-stream/   body {"objectIds": [...]}
// both with `Authorization: Bearer <token>` (omitted when token is empty) and
// `Accept: text/plain` (the POST also `Content-Type: application/json`), so a page on
// another origin makes CORS preflights for both.
import { Viewer, DefaultViewerParams, DefaultPipeline, LoaderEvent, CameraController, UpdateFlags } from '@speckle/viewer'
import { makeLoader, msg, nextFrame, setPipelineQuality } from './loader.js'

const DEFAULTS = {
  width: 700,
  height: 400,
  angles: 24,
  timeoutMs: 60000,
  // Ambient occlusion: the viewer's progressive AO (accumulated over accumulationFrames
  // frames, the viewer's own default being 16). Off, each angle is one plain frame
  // (multisampled edges, sun light only), about 15 times faster on SwiftShader.
  ao: false,
  accumulationFrames: 4
}

let viewer = null
let initError = null
let queue = Promise.resolve()

class PreviewError extends Error {
  constructor(message) {
    super(message)
    this.name = 'PreviewError'
  }
}

function container() {
  const el = document.getElementById('renderer')
  if (!el) throw new PreviewError('page has no #renderer element')
  return el
}

function initViewer() {
  if (viewer) return viewer
  if (initError) throw initError
  const params = Object.assign({}, DefaultViewerParams, {
    showStats: false,
    verbose: false,
    // No image-based lighting: the embedded HDRI costs time to decode and to sample
    // on a software (SwiftShader) GPU; the sun light is enough for a thumbnail.
    environmentSrc: null
  })
  let v
  try {
    v = new Viewer(container(), params)
  } catch (e) {
    initError = new PreviewError(`WebGL failure: could not create the viewer: ${msg(e)}`)
    throw initError
  }
  const gl = v.getRenderer().renderer.getContext()
  if (!gl || (gl.isContextLost && gl.isContextLost())) {
    initError = new PreviewError('WebGL failure: no usable WebGL context')
    throw initError
  }
  v.getCanvas().addEventListener('webglcontextlost', (ev) => {
    ev.preventDefault()
    initError = new PreviewError('WebGL failure: context lost')
  })
  // viewer.init() only loads the environment map, which is off: nothing to await.
  v.init().catch(() => {})
  v.createExtension(CameraController)
  const renderer = v.getRenderer()
  // Fixed pixel ratio: the screenshot is exactly width x height pixels.
  renderer.renderer.setPixelRatio(1)
  // Edges off: the default pipeline without its edges passes.
  renderer.pipeline = new DefaultPipeline(renderer, { edges: false })
  // No shadow map, no shadow catcher.
  v.setLightConfiguration({ castShadow: false, shadowcatcher: false })
  viewer = v
  return v
}

// AO on: depth + progressive AO + blend passes, n accumulation frames per screenshot.
// AO off: those passes disabled and a single frame (nothing else in the default
// pipeline accumulates).
function setQuality(ao, n) {
  setPipelineQuality(viewer.getRenderer().pipeline, ao, ao ? n : 1)
}

function setSize(width, height) {
  const el = container()
  const w = `${width}px`
  const h = `${height}px`
  if (el.style.width !== w || el.style.height !== h) {
    el.style.width = w
    el.style.height = h
  }
  viewer.resize()
}

function createWatch(deadline, timeoutMs, stage) {
  // Failures that happen off the awaited path (the loader's download queue rejects
  // in the background) show up as unhandled rejections: turn them into the error.
  const watch = { error: null, stage }
  watch.onRejection = (ev) => {
    if (!watch.error) watch.error = new PreviewError(`${watch.stage}: ${msg(ev.reason)}`)
  }
  watch.onError = (ev) => {
    if (!watch.error) watch.error = new PreviewError(`${watch.stage}: ${msg(ev.error || ev.message)}`)
  }
  watch.check = () => {
    if (watch.error) throw watch.error
    if (initError) throw initError
    if (Date.now() > deadline) {
      throw new PreviewError(`timed out after ${timeoutMs} ms while ${watch.stage}`)
    }
  }
  window.addEventListener('unhandledrejection', watch.onRejection)
  window.addEventListener('error', watch.onError)
  watch.dispose = () => {
    window.removeEventListener('unhandledrejection', watch.onRejection)
    window.removeEventListener('error', watch.onError)
  }
  return watch
}

// Race a promise against the watch (errors, deadline), polling once per frame.
async function guarded(promise, watch) {
  let settled = false
  let value
  let error
  promise.then(
    (v) => {
      settled = true
      value = v
    },
    (e) => {
      settled = true
      error = e
    }
  )
  for (;;) {
    if (settled) {
      if (error !== undefined) throw error
      return value
    }
    watch.check()
    await nextFrame()
  }
}

// Readiness: the renderer has stopped accumulating. Done when no frame is pending and
// either the progressive pipeline ran all its accumulation frames since the last reset,
// or nothing has been pending for two frames in a row (no pass asked for more). The
// frame-index test skips the moment between a dynamic frame and the next stationary
// restart, which would otherwise look idle.
async function untilStill(watch) {
  const renderer = viewer.getRenderer()
  let idleFrames = 0
  for (;;) {
    await nextFrame()
    watch.check()
    const p = renderer.pipeline
    if (renderer._needsRender) {
      idleFrames = 0
      continue
    }
    idleFrames++
    const accumulated =
      typeof p.accumulationFrameIndex !== 'number' ||
      (!p.accumulating && p.accumulationFrameIndex >= p.accumulationFrameCount)
    if (accumulated || idleFrames >= 2) return
  }
}

async function renderOnce(opts) {
  const o = Object.assign({}, DEFAULTS, opts || {})
  for (const key of ['serverUrl', 'projectId', 'objectId']) {
    if (typeof o[key] !== 'string' || !o[key]) {
      throw new PreviewError(`render: option ${key} is required`)
    }
  }
  o.serverUrl = o.serverUrl.replace(/\/+$/, '')
  const angles = Math.floor(Number(o.angles))
  const width = Math.floor(Number(o.width))
  const height = Math.floor(Number(o.height))
  if (!(angles >= 1 && angles <= 360)) throw new PreviewError('render: angles must be 1..360')
  if (!(width >= 1 && height >= 1)) throw new PreviewError('render: bad width/height')
  const timeoutMs = Number(o.timeoutMs) > 0 ? Number(o.timeoutMs) : DEFAULTS.timeoutMs
  const deadline = Date.now() + timeoutMs

  const t0 = performance.now()
  initViewer()
  const watch = createWatch(deadline, timeoutMs, 'loading the object')
  let loader = null
  try {
    await guarded(viewer.unloadAll(), watch)
    setSize(width, height)
    setQuality(o.ao === true, Math.max(1, Math.floor(Number(o.accumulationFrames)) || 1))

    loader = makeLoader(viewer.getWorldTree(), o, (e) => {
      if (!watch.error) watch.error = loadError(e, o)
    })
    if (!loader) throw new PreviewError('could not create the object loader')
    let warning = null
    loader.on(LoaderEvent.LoadWarning, (w) => {
      warning = (w && w.message) || 'no displayable objects'
    })
    try {
      await guarded(viewer.loadObject(loader, true), watch)
    } catch (e) {
      throw e instanceof PreviewError ? e : loadError(e, o)
    }
    const batches = viewer.getRenderer().batcher.batches
    if (warning || !batches || Object.keys(batches).length === 0) {
      throw new PreviewError(`no geometry: object ${o.objectId} has nothing displayable`)
    }
    const loadMs = performance.now() - t0

    watch.stage = 'rendering'
    const t1 = performance.now()
    const camera = viewer.getExtension(CameraController)
    viewer.resize()
    camera.setCameraView([], false, 0.95) // zoom extents
    viewer.requestRender(UpdateFlags.RENDER_RESET)
    await untilStill(watch)
    const step = (2 * Math.PI) / angles
    const screenshots = []
    for (let i = 0; i < angles; i++) {
      if (i > 0) {
        camera.setCameraView({ azimuth: step, polar: 0 }, false)
        viewer.requestRender(UpdateFlags.RENDER_RESET)
        await untilStill(watch)
      }
      screenshots.push(await viewer.screenshot())
    }
    const renderMs = performance.now() - t1
    return { screenshots, loadMs: Math.round(loadMs), renderMs: Math.round(renderMs) }
  } catch (e) {
    // Leave the page reusable: drop whatever was half loaded.
    try {
      if (loader && viewer.loaders && viewer.loaders[loader.resource]) {
        await viewer.cancelLoad(loader.resource, false).catch(() => {})
        delete viewer.loaders[loader.resource]
      }
    } catch {
      // ignore
    }
    throw e instanceof PreviewError ? e : new PreviewError(`${watch.stage}: ${msg(e)}`)
  } finally {
    watch.dispose()
  }
}

function loadError(e, o) {
  const m = msg(e)
  // First: its message lists object ids, and a random hex id can hold "404".
  if (/not downloaded/i.test(m)) return new PreviewError(`missing child objects: ${m}`)
  if (/\b404\b/.test(m)) return new PreviewError(`object not found: ${o.objectId} in project ${o.projectId} (${m})`)
  if (/access/i.test(m) || /\b40[13]\b/.test(m)) {
    return new PreviewError(`access denied loading ${o.objectId} in project ${o.projectId} (${m})`)
  }
  if (/Failed to fetch|NetworkError/i.test(m)) {
    return new PreviewError(`network error loading from ${o.serverUrl}: ${m}`)
  }
  return new PreviewError(`loading the object failed: ${m}`)
}

function render(opts) {
  const run = queue.then(() => renderOnce(opts))
  queue = run.catch(() => {})
  return run
}

// The Viewer itself is created lazily, by the first render.
window.strataPreview = { render, ready: true }
