// What the two viewer entry points (preview.js, the headless preview page, and app.js,
// the web app's interactive viewer) share: loading a model's objects from strata,
// the rendering pipeline's quality switch and small helpers. Not an entry point of
// its own: deploy/build-viewer bundles it into each of them.
//
// Objects are fetched by @speckle/objectloader2 without its IndexedDB cache:
//   GET  {serverUrl}/objects/{projectId}/{objectId}/single
//   POST {serverUrl}/api/v2/projects/{projectId}/object-stream/   body {"objectIds": [...]}
// both with `Authorization: Bearer <token>` (omitted when token is empty).
import { SpeckleLoader, ProgressiveAOPass, DepthPass, BlendPass } from '@speckle/viewer'
import { ObjectLoader2 } from '@speckle/objectloader2'
// Internals of the pinned objectloader2 2.28.0 (not in its package exports, so imported
// by path; deploy/build-viewer bundles from a directory with node_modules beside src/).
import ServerDownloader from '../node_modules/@speckle/objectloader2/dist/esm/core/stages/serverDownloader.js'
import { MemoryDatabase } from '../node_modules/@speckle/objectloader2/dist/esm/core/stages/memory/memoryDatabase.js'
import { DefermentManager } from '../node_modules/@speckle/objectloader2/dist/esm/deferment/defermentManager.js'

// The message of anything thrown or rejected with.
export function msg(e) {
  if (e instanceof Error) return e.message
  if (typeof e === 'string') return e
  try {
    return JSON.stringify(e)
  } catch {
    return String(e)
  }
}

// Resolves on the next animation frame, or after 100 ms if frames are throttled.
export const nextFrame = () =>
  new Promise((resolve) => {
    // rAF drives the viewer; the timeout keeps polling alive if frames are throttled.
    const t = setTimeout(resolve, 100)
    requestAnimationFrame(() => {
      clearTimeout(t)
      resolve()
    })
  })

// AO on: depth + progressive AO + blend passes, `frames` accumulation frames per view.
// AO off: those passes disabled (callers then pass one frame: nothing else in the
// default pipeline accumulates).
export function setPipelineQuality(pipeline, ao, frames) {
  for (const pass of pipeline.passes || []) {
    if (pass instanceof ProgressiveAOPass || pass instanceof DepthPass || pass instanceof BlendPass) {
      pass.enabled = ao
    }
    if (pass && 'accumulationFrames' in pass) pass.accumulationFrames = frames
  }
  if (typeof pipeline.accumulationFrameCount === 'number') pipeline.accumulationFrameCount = frames
}

// objectloader2 collects child ids and posts them to object-stream 1 s after the last
// id was queued (ServerDownloader's default maxDownloadBatchWait); the whole closure is
// known up front, so that second only delays the load. Batches still go out at 15000
// ids.
const DOWNLOAD_BATCH_WAIT_MS = 50

class StrataDownloader extends ServerDownloader {
  constructor(options, onBatchError) {
    super(options)
    this.onBatchError = onBatchError
  }

  initialize(params) {
    super.initialize({ ...params, maxDownloadBatchWait: DOWNLOAD_BATCH_WAIT_MS })
  }

  // A failed object-stream batch (HTTP error, missing ids, network) is only logged by
  // the batching queue and the load then waits forever: report it instead.
  async downloadBatch(params) {
    try {
      return await super.downloadBatch(params)
    } catch (e) {
      this.onBatchError(e)
      throw e
    }
  }
}

// What ObjectLoader2Factory.createFromUrl builds with useCache=false (memory database,
// no IndexedDB), with the downloader above.
function createObjectLoader(o, onBatchError) {
  const logger = () => {}
  return new ObjectLoader2({
    rootId: o.objectId,
    deferments: new DefermentManager(logger),
    downloader: new StrataDownloader(
      {
        serverUrl: o.serverUrl,
        streamId: o.projectId,
        objectId: o.objectId,
        token: o.token || undefined,
        logger
      },
      onBatchError
    ),
    database: new MemoryDatabase({ items: new Map() }),
    logger
  })
}

// A SpeckleLoader into `tree` that loads exactly {serverUrl, projectId, objectId} with
// `token` (no parsing of the resource URL, so a server under a path prefix works);
// onBatchError(e) hears of a failed object-stream batch. Null when the SpeckleLoader
// made no object loader.
export function makeLoader(tree, o, onBatchError) {
  const resource = `${o.serverUrl}/streams/${o.projectId}/objects/${o.objectId}`
  class StrataLoader extends SpeckleLoader {
    initObjectLoader() {
      return createObjectLoader(o, onBatchError)
    }
  }
  const loader = new StrataLoader(tree, resource, o.token || undefined, false)
  return loader.loader ? loader : null
}
