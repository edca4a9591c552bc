// Interactive viewer "island" for the web app's viewer page (bundled to app.js by
// deploy/build-viewer, served at /_strata/viewer/app.js).
//
// The server-rendered page holds:
//
//   <div id="viewer" data-server-url="http://host:3000" data-project-id="..."
//        data-object-id="<root object id>" data-token="<bearer token or empty>"
//        data-embed="false" data-transparent="false" data-hide-controls="false"></div>
//   <aside id="selection" aria-live="polite" hidden></aside>
//   <div id="viewer-status" role="status">Loading the model…</div>
//   <script src="/_strata/viewer/app.js" defer></script>
//
// #viewer attributes (flags are "true"/"1"/present-and-empty, anything else is false):
//   data-server-url      strata's base URL (default: this page's origin)
//   data-project-id      required
//   data-object-id       required: the root object to load
//   data-token           bearer token; empty: no Authorization header
//   data-transparent     no background (for embeds); otherwise white unless the page
//                        gives #viewer a background
//   data-hide-controls   no "Zoom to fit" button (the only extra UI)
//   data-hide-selection  clicking still selects (highlight, dataset, strataViewer) but
//                        #selection stays hidden
//   data-quality         "high" | "low" | "auto" (default): see pickQuality
//   data-embed           read (strataViewer.options.embed), no behaviour of its own
//
// On DOMContentLoaded this creates a @speckle/viewer Viewer in #viewer (its canvas fills
// the div and follows its size), with the CameraController (orbit: drag, zoom: wheel,
// pan: right drag) and the SelectionExtension (click selects, click on nothing clears,
// double click zooms to the object), loads the object tree and zooms to extents.
// A click is a primary-button press released within 5 px and 600 ms (see
// installClickFilter); a drag orbits and never selects.
//
// State, for people and browser tests:
//   document.body.dataset.viewerState  "loading" -> "loaded" | "error"; "loaded" is set
//                                      once the zoomed-to-extents model is on screen
//   document.body.dataset.viewerError  the error message (state "error" only), starting
//                                      with "Object not found", "Access denied",
//                                      "Network error", "No geometry", "WebGL failure",
//                                      "The model is incomplete" or "Loading the model"
//   document.body.dataset.selected     id of the selected object (absent when none)
//   #viewer-status                     "Loading the model…" (from the page), then
//                                      "Loaded N objects" (visually hidden, still in the
//                                      accessibility tree) or the error (visible)
//   #selection                         hidden when nothing is selected; otherwise
//                                      <h2>name or speckle_type</h2>
//                                      <p class="strata-selection-type"> (when named)
//                                      <dl class="strata-properties">
//                                        <div data-key="K"><dt>K</dt><dd>value</dd></div>…
//                                      <p class="strata-selection-truncated"> (> 200 rows)
//   window.strataViewer = { viewer, state, selected, objectCount, error, quality,
//                           options, zoomExtents(), clearSelection(), select(id) }
//
// Keyboard (#viewer gets tabindex="0"; pressing on the model focuses it): Escape clears
// the selection, f / F / Home zooms to extents.
//
// Objects are fetched by loader.js, as in preview.js: @speckle/objectloader2 without
// its IndexedDB cache, GET {serverUrl}/objects/{projectId}/{objectId}/single and POST
// {serverUrl}/api/v2/projects/{projectId}/object-stream/, with `Authorization: Bearer
// <token>` when data-token is not empty.
import {
  Viewer,
  DefaultViewerParams,
  DefaultPipeline,
  LoaderEvent,
  CameraController,
  SelectionExtension,
  ViewerEvent,
  UpdateFlags,
  Input,
  InputEvent
} from '@speckle/viewer'
import { makeLoader, msg, nextFrame, setPipelineQuality } from './loader.js'

const LOAD_TIMEOUT_MS = 180000
// At most this many rows in the selection panel.
const MAX_ROWS = 200
// Nested objects deeper than this are summarised, not flattened.
const MAX_DEPTH = 6
// Arrays longer than this are summarised ("array of N items"), not listed.
const MAX_ARRAY_ITEMS = 20
const MAX_STRING_CHARS = 1000
// Never shown: geometry buffers, children, internal bookkeeping.
const SKIPPED_KEYS = new Set([
  'displayValue',
  'elements',
  '__closure',
  'vertices',
  'faces',
  'colors',
  'textureCoordinates',
  'vertexNormals',
  'normals'
])
const FIRST_KEYS = ['id', 'speckle_type', 'applicationId']
// A click (which selects) is a primary-button press released within this many CSS
// pixels and milliseconds of where and when it went down.
const CLICK_SLOP_PX = 5
const CLICK_MAX_MS = 600

class ViewerError extends Error {
  constructor(message) {
    super(message)
    this.name = 'ViewerError'
  }
}

// ---------------------------------------------------------------------------------
// Object loading (makeLoader in loader.js, shared with preview.js)

// A readable message for a failed load.
function loadError(e, o) {
  if (e instanceof ViewerError) return e
  const m = msg(e)
  // First: its message lists object ids.
  if (/not downloaded/i.test(m)) {
    return new ViewerError(`The model is incomplete: some of its objects are missing (${m}).`)
  }
  if (/\b404\b/.test(m)) {
    return new ViewerError(`Object not found: ${o.objectId} is not in this project.`)
  }
  if (/access/i.test(m) || /\b40[13]\b/.test(m)) {
    return new ViewerError('Access denied: you are not allowed to load this model.')
  }
  if (/Failed to fetch|NetworkError|Load failed|network/i.test(m)) {
    return new ViewerError(`Network error: could not reach ${o.serverUrl} (${m}).`)
  }
  return new ViewerError(`Loading the model failed: ${m}`)
}

// ---------------------------------------------------------------------------------
// Page state

const api = {
  viewer: null,
  state: 'loading',
  selected: null,
  objectCount: 0,
  error: null,
  quality: null,
  options: null,
  zoomExtents: () => {},
  clearSelection: () => {},
  select: () => {}
}

function flag(el, name) {
  const v = el.dataset[name]
  return v === '' || v === 'true' || v === '1'
}

function hideVisually(el) {
  Object.assign(el.style, {
    position: 'absolute',
    width: '1px',
    height: '1px',
    margin: '-1px',
    padding: '0',
    border: '0',
    overflow: 'hidden',
    clip: 'rect(0 0 0 0)',
    clipPath: 'inset(50%)',
    whiteSpace: 'nowrap'
  })
}

function setStatus(text, visible) {
  const el = document.getElementById('viewer-status')
  if (!el) return
  el.textContent = text
  if (visible) {
    for (const p of ['position', 'width', 'height', 'margin', 'padding', 'border', 'overflow', 'clip', 'clipPath', 'whiteSpace']) {
      el.style[p] = ''
    }
  } else {
    hideVisually(el)
  }
}

function setState(state, error) {
  api.state = state
  document.body.dataset.viewerState = state
  if (state === 'error') {
    api.error = error
    document.body.dataset.viewerError = error
    setStatus(error, true)
  } else {
    api.error = null
    delete document.body.dataset.viewerError
  }
}

function fail(e) {
  if (api.state === 'error') return
  const m = e instanceof ViewerError ? e.message : `The viewer failed: ${msg(e)}`
  setState('error', m)
}

// ---------------------------------------------------------------------------------
// Selection panel

function formatScalar(v) {
  if (v === null) return 'null'
  if (typeof v === 'string') {
    return v.length > MAX_STRING_CHARS ? `${v.slice(0, MAX_STRING_CHARS)}…` : v
  }
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v)
  return ''
}

function skipKey(key) {
  return key.startsWith('@') || key.startsWith('__') || SKIPPED_KEYS.has(key)
}

// Flattens a raw object into [key, value] rows: nested objects become dotted keys
// (properties.Pset_WallCommon.IsExternal), arrays of scalars a comma-separated list,
// references and long arrays a summary. At most `limit` rows; `truncated` tells whether
// more were left out.
function flatten(raw, limit) {
  const rows = []
  const full = () => rows.length > limit
  const seen = new Set()
  const walk = (value, key, depth) => {
    if (full() || value === undefined || typeof value === 'function') return
    if (value === null || typeof value !== 'object') {
      rows.push([key, formatScalar(value)])
      return
    }
    if (seen.has(value)) return
    if (Array.isArray(value)) {
      if (value.length === 0) {
        rows.push([key, '[]'])
      } else if (value.every((x) => x === null || typeof x !== 'object')) {
        rows.push([
          key,
          value.length > MAX_ARRAY_ITEMS ? `array of ${value.length} items` : value.map(formatScalar).join(', ')
        ])
      } else if (value.length > MAX_ARRAY_ITEMS || depth >= MAX_DEPTH) {
        rows.push([key, `array of ${value.length} items`])
      } else {
        seen.add(value)
        value.forEach((item, i) => walk(item, `${key}.${i}`, depth + 1))
      }
      return
    }
    if (typeof value.referencedId === 'string') {
      rows.push([key, `reference to ${value.referencedId}`])
      return
    }
    if (depth >= MAX_DEPTH) {
      rows.push([key, '{…}'])
      return
    }
    seen.add(value)
    const keys = Object.keys(value).filter((k) => !skipKey(k))
    if (keys.length === 0) rows.push([key, '{}'])
    for (const k of keys) walk(value[k], `${key}.${k}`, depth + 1)
  }
  if (raw && typeof raw === 'object') {
    seen.add(raw)
    for (const k of FIRST_KEYS) {
      const v = raw[k]
      rows.push([k, v === undefined || v === null || v === '' ? '(none)' : formatScalar(v)])
    }
    for (const k of Object.keys(raw)) {
      if (!FIRST_KEYS.includes(k) && !skipKey(k)) walk(raw[k], k, 1)
    }
  }
  return { rows: rows.slice(0, limit), truncated: rows.length > limit }
}

function renderSelection(panel, raw) {
  panel.replaceChildren()
  const heading = document.createElement('h2')
  const name = raw && typeof raw.name === 'string' && raw.name ? raw.name : null
  heading.textContent = name || (raw && raw.speckle_type) || 'Object'
  panel.appendChild(heading)
  if (name && raw.speckle_type) {
    const type = document.createElement('p')
    type.className = 'strata-selection-type'
    type.textContent = String(raw.speckle_type)
    panel.appendChild(type)
  }
  const { rows, truncated } = flatten(raw, MAX_ROWS)
  const dl = document.createElement('dl')
  dl.className = 'strata-properties'
  for (const [key, value] of rows) {
    const row = document.createElement('div')
    row.dataset.key = key
    const dt = document.createElement('dt')
    dt.textContent = key
    const dd = document.createElement('dd')
    dd.textContent = value
    row.append(dt, dd)
    dl.appendChild(row)
  }
  panel.appendChild(dl)
  if (truncated) {
    const more = document.createElement('p')
    more.className = 'strata-selection-truncated'
    more.textContent = `Only the first ${MAX_ROWS} properties are shown.`
    panel.appendChild(more)
  }
  panel.hidden = false
}

// ---------------------------------------------------------------------------------
// Viewer

// The original's embed options: `#embed=<encodeURIComponent(JSON)>` (other `key=value`
// pairs may follow, joined by `&`). Only its boolean keys are read; an unknown key or a
// non-boolean value turns the options off, as the original does.
const EMBED_KEYS = ['isEnabled', 'isTransparent', 'hideControls', 'hideSelectionInfo',
  'disableModelLink', 'noScroll', 'manualLoad', 'hideSpeckleBranding']

function embedOptions(hash) {
  const pair = (hash || '').replace(/^#/, '').split('&').find((p) => p.startsWith('embed='))
  if (!pair) return {}
  let parsed
  try {
    parsed = JSON.parse(decodeURIComponent(pair.slice('embed='.length)))
  } catch {
    return {}
  }
  if (!parsed || typeof parsed !== 'object') return {}
  for (const [k, v] of Object.entries(parsed)) {
    if (!EMBED_KEYS.includes(k) || typeof v !== 'boolean') return {}
  }
  const out = {}
  if (parsed.isTransparent) out.transparent = true
  if (parsed.hideControls) out.hideControls = true
  if (parsed.hideSelectionInfo) out.hideSelection = true
  return out
}

function readOptions(el) {
  const o = {
    serverUrl: (el.dataset.serverUrl || '').replace(/\/+$/, ''),
    projectId: el.dataset.projectId || '',
    objectId: el.dataset.objectId || '',
    token: el.dataset.token || '',
    embed: flag(el, 'embed'),
    transparent: flag(el, 'transparent'),
    hideControls: flag(el, 'hideControls'),
    hideSelection: flag(el, 'hideSelection')
  }
  if (!o.serverUrl) o.serverUrl = window.location.origin
  if (o.embed) Object.assign(o, embedOptions(window.location.hash))
  for (const [key, attr] of [
    ['projectId', 'data-project-id'],
    ['objectId', 'data-object-id']
  ]) {
    if (!o[key]) throw new ViewerError(`The page is missing ${attr} on #viewer.`)
  }
  return o
}

function prepareContainer(el, o) {
  if (getComputedStyle(el).position === 'static') el.style.position = 'relative'
  el.style.overflow = 'hidden'
  if (o.transparent) {
    el.style.background = 'transparent'
  } else if (/^(transparent|rgba\(0, 0, 0, 0\))$/.test(getComputedStyle(el).backgroundColor)) {
    // The canvas is transparent: give the model a background unless the page did.
    el.style.backgroundColor = '#ffffff'
  }
  if (!el.hasAttribute('tabindex')) el.tabIndex = 0
  if (!el.hasAttribute('role')) el.setAttribute('role', 'region')
  if (!el.hasAttribute('aria-label')) {
    el.setAttribute(
      'aria-label',
      '3D model viewer: drag to orbit, scroll to zoom, click an object to select it, ' +
        'Escape clears the selection, F zooms to fit'
    )
  }
}

function addControls(el, actions) {
  const bar = document.createElement('div')
  bar.className = 'strata-viewer-controls'
  Object.assign(bar.style, {
    position: 'absolute',
    top: '8px',
    right: '8px',
    display: 'flex',
    gap: '4px',
    zIndex: '1'
  })
  const button = document.createElement('button')
  button.type = 'button'
  button.textContent = 'Zoom to fit'
  button.title = 'Zoom to fit (F)'
  Object.assign(button.style, {
    font: '13px system-ui, sans-serif',
    padding: '4px 8px',
    border: '1px solid #bbb',
    borderRadius: '4px',
    background: 'rgba(255, 255, 255, 0.9)',
    color: '#222',
    cursor: 'pointer'
  })
  button.addEventListener('click', () => actions.zoomExtents(true))
  // Keep pointer events on the button from reaching the viewer's controls.
  button.addEventListener('pointerdown', (ev) => ev.stopPropagation())
  bar.appendChild(button)
  el.appendChild(bar)
}

// The WebGL renderer's name ("ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device ...))"),
// from a throwaway context, or '' when unknown.
function glRendererName() {
  try {
    const canvas = document.createElement('canvas')
    const gl = canvas.getContext('webgl2') || canvas.getContext('webgl')
    if (!gl) return ''
    const ext = gl.getExtension('WEBGL_debug_renderer_info')
    const name = String(gl.getParameter(ext ? ext.UNMASKED_RENDERER_WEBGL : gl.RENDERER) || '')
    const lose = gl.getExtension('WEBGL_lose_context')
    if (lose) lose.loseContext()
    return name
  } catch {
    return ''
  }
}

// "low" quality: no shadows, no ambient occlusion, no edges, one frame per view instead
// of a progressive accumulation of 16 (the image-based lighting stays: without it the
// faces turned away from the sun are black). data-quality="low" | "high"; "auto" (the
// default) is "low" on a software renderer (SwiftShader, llvmpipe: machines without a
// GPU, headless browsers), where each progressive frame takes about a second and the
// model takes twice as long to appear, and "high" otherwise.
function pickQuality(el) {
  const q = el.dataset.quality
  if (q === 'low' || q === 'high') return q
  return /SwiftShader|llvmpipe|softpipe|Software/i.test(glRendererName()) ? 'low' : 'high'
}

function applyLowQuality(viewer) {
  const renderer = viewer.getRenderer()
  renderer.pipeline = new DefaultPipeline(renderer, { edges: false })
  viewer.setLightConfiguration({ castShadow: false, shadowcatcher: false })
  setPipelineQuality(renderer.pipeline, false, 1)
}

function createViewer(el, quality) {
  const params = Object.assign({}, DefaultViewerParams, { showStats: false, verbose: false })
  let viewer
  try {
    viewer = new Viewer(el, params)
  } catch (e) {
    throw new ViewerError(`WebGL failure: could not create the 3D viewer (${msg(e)}).`)
  }
  const gl = viewer.getRenderer().renderer.getContext()
  if (!gl || (gl.isContextLost && gl.isContextLost())) {
    throw new ViewerError('WebGL failure: this browser gave no usable WebGL context.')
  }
  if (quality === 'low') applyLowQuality(viewer)
  const canvas = viewer.getCanvas()
  Object.assign(canvas.style, { display: 'block', position: 'absolute', left: '0', top: '0' })
  canvas.addEventListener('webglcontextlost', (ev) => {
    ev.preventDefault()
    fail(new ViewerError('WebGL failure: the graphics context was lost; reload the page.'))
  })
  return viewer
}

// The viewer's Input emits a click on pointerup when the handlers of pointerdown and
// pointerup ran at most 200 ms apart (measured when they run, so a slow frame in
// between, common on a software renderer, eats the click) and not within 500 ms of the
// previous click (so a second click soon after is ignored). Replace that with: a click
// is a press that did not move (CLICK_SLOP_PX) and was short (CLICK_MAX_MS, by the
// events' own timestamps), with any button but the primary one ignored. Orbiting or
// panning (a drag) never selects.
function installClickFilter(viewer) {
  Input.MIN_CLICK_TIMING = Infinity
  Input.MAX_DOUBLE_CLICK_TIMING = -1
  const canvas = viewer.getCanvas()
  const input = viewer.input
  let down = null
  canvas.addEventListener('pointerdown', (ev) => {
    down = ev.isPrimary
      ? { x: ev.clientX, y: ev.clientY, t: ev.timeStamp, id: ev.pointerId, button: ev.button }
      : null
  })
  const isClick = (up) =>
    !!down &&
    !!up &&
    up.pointerId === down.id &&
    down.button === 0 &&
    Math.hypot(up.clientX - down.x, up.clientY - down.y) <= CLICK_SLOP_PX &&
    up.timeStamp - down.t <= CLICK_MAX_MS
  const emitInput = input.emit
  input.emit = function (type, ...args) {
    if (type === InputEvent.Click && !isClick(args[0] && args[0].event)) return
    return emitInput.call(this, type, ...args)
  }
  // A shift-click on nothing is reported as {multiple: true} without hits, which the
  // SelectionExtension does not expect (it reads hits[0]): keep the selection instead.
  const emitViewer = viewer.emit
  viewer.emit = function (type, ...args) {
    if (type === ViewerEvent.ObjectClicked && args[0] && !args[0].hits) return
    return emitViewer.call(this, type, ...args)
  }
}

async function start() {
  const el = document.getElementById('viewer')
  if (!el) {
    setState('error', 'The page has no #viewer element.')
    return
  }
  const panel = document.getElementById('selection')
  setState('loading')

  const o = readOptions(el)
  api.options = Object.assign({}, o, { token: o.token ? '(set)' : '' })
  prepareContainer(el, o)
  api.quality = pickQuality(el)
  const viewer = createViewer(el, api.quality)
  api.viewer = viewer
  const camera = viewer.createExtension(CameraController)
  const selection = viewer.createExtension(SelectionExtension)
  installClickFilter(viewer)
  viewer.init().catch(() => {}) // only loads the environment map

  // Follow the container's size (the viewer itself only listens to window resizes).
  if (typeof ResizeObserver === 'function') {
    let pending = false
    new ResizeObserver(() => {
      if (pending) return
      pending = true
      requestAnimationFrame(() => {
        pending = false
        viewer.resize()
        viewer.requestRender(UpdateFlags.RENDER_RESET)
      })
    }).observe(el)
  }

  // Selection.
  const showSelection = () => {
    const nodes = selection.getSelectedNodes()
    const node = nodes.length ? nodes[nodes.length - 1] : null
    const raw = node && node.model ? node.model.raw : null
    const id = raw && typeof raw.id === 'string' ? raw.id : node ? node.model.id : null
    api.selected = id || null
    if (api.selected) document.body.dataset.selected = api.selected
    else delete document.body.dataset.selected
    if (!panel) return
    if (node && !o.hideSelection) {
      renderSelection(panel, raw || { id })
    } else {
      panel.hidden = true
      panel.replaceChildren()
    }
  }
  // Runs after SelectionExtension's own handler (registered when it was created).
  viewer.on(ViewerEvent.ObjectClicked, showSelection)

  const zoomExtents = (transition = true) => {
    camera.setCameraView([], transition)
    viewer.requestRender(UpdateFlags.RENDER_RESET)
  }
  const clearSelection = () => {
    selection.clearSelection()
    showSelection()
    viewer.requestRender()
  }
  api.zoomExtents = zoomExtents
  api.clearSelection = clearSelection
  api.select = (id) => {
    selection.selectObjects([id])
    showSelection()
  }

  // Keyboard: on the focused viewer (or with nothing else focused).
  // (The viewer's own pointerdown handler prevents the default, so a click would not
  // move the focus here by itself; focusVisible: no focus ring for a mouse click.)
  el.addEventListener('pointerdown', () => {
    if (document.activeElement !== el) el.focus({ preventScroll: true, focusVisible: false })
  })
  // Keys act when the viewer has the focus; Escape also from the selection panel or
  // with nothing focused.
  document.addEventListener('keydown', (ev) => {
    if (ev.defaultPrevented || ev.altKey || ev.ctrlKey || ev.metaKey) return
    const t = ev.target
    const onViewer = t === el || (t instanceof Node && el.contains(t) && !(t instanceof HTMLButtonElement))
    if (ev.key === 'Escape') {
      const onNothing = t === document.body || t === document.documentElement || t === document
      const onPanel = panel && t instanceof Node && panel.contains(t)
      if (api.selected && (onViewer || onNothing || onPanel)) {
        clearSelection()
        ev.preventDefault()
      }
    } else if (ev.key === 'f' || ev.key === 'F' || ev.key === 'Home') {
      if (onViewer && api.state === 'loaded') {
        zoomExtents(true)
        ev.preventDefault()
      }
    }
  })

  if (!o.hideControls) addControls(el, { zoomExtents })

  await load(viewer, camera, o)
}

// Loads the model; resolves when it is on screen, zoomed to extents.
async function load(viewer, camera, o) {
  // Failures off the awaited path (the loader's queue rejects in the background) show
  // up as unhandled rejections or as the downloader's batch error.
  let failure = null
  const onRejection = (ev) => {
    if (!failure) failure = loadError(ev.reason, o)
  }
  window.addEventListener('unhandledrejection', onRejection)
  try {
    const loader = makeLoader(viewer.getWorldTree(), o, (e) => {
      if (!failure) failure = loadError(e, o)
    })
    if (!loader) throw new ViewerError('Could not create the object loader.')
    let warning = null
    loader.on(LoaderEvent.LoadWarning, (w) => {
      warning = (w && w.message) || 'no displayable objects'
    })
    let done = false
    let error = null
    viewer.loadObject(loader, true).then(
      () => {
        done = true
      },
      (e) => {
        done = true
        error = e
      }
    )
    const deadline = Date.now() + LOAD_TIMEOUT_MS
    while (!done) {
      if (failure) break
      if (Date.now() > deadline) {
        failure = new ViewerError(`Loading the model timed out after ${LOAD_TIMEOUT_MS / 1000} s.`)
        break
      }
      await nextFrame()
    }
    if (failure || error) {
      const e = failure || loadError(error, o)
      viewer.cancelLoad(loader.resource, false).catch(() => {})
      throw e
    }
    const batches = viewer.getRenderer().batcher.batches
    if (warning || !batches || Object.keys(batches).length === 0) {
      throw new ViewerError('No geometry: this model has nothing that can be displayed in 3D.')
    }
    const tree = viewer.getWorldTree()
    api.objectCount = tree.findAll((n) => n.model.atomic && !tree.isRoot(n)).length
    viewer.resize()
    camera.setCameraView([], false) // zoom extents, at once
    viewer.requestRender(UpdateFlags.RENDER_RESET)
    // Let the zoomed view reach the screen before telling anyone it is there.
    await nextFrame()
    await nextFrame()
    const n = api.objectCount
    setStatus(`Loaded ${n} object${n === 1 ? '' : 's'}`, false)
    setState('loaded')
  } finally {
    window.removeEventListener('unhandledrejection', onRejection)
  }
}

window.strataViewer = api

function boot() {
  start().catch(fail)
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', boot, { once: true })
} else {
  boot()
}
