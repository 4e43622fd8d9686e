#!/usr/bin/env node
// Interoperability check: drive a running Sealpost server with tus-js-client (Node), a tus
// client we did not write, through its ordinary documented API only (the bearer token is the
// one header added; no raw requests from the client side).
//
// Registers a fresh account (Ed25519 identity key signs the login challenge; node:crypto), logs
// in, then:
//   1. sha256-hex          ~3 MiB Buffer in 1 MiB chunks, metadata {filename, filetype,
//                          sha256: hex digest}; the last response's Sealpost-Blob-Id, a HEAD,
//                          and GET /v1/blobs/{id} give back the same bytes;
//   2. sha256-base64       the same with `sha256` as standard base64 text of the digest;
//   3. resume-upload-url   abort() right after the first chunk was acknowledged; a HEAD shows
//                          the server kept exactly that offset; a NEW Upload given the old
//                          `uploadUrl` creates nothing, resumes at that offset and finishes;
//      resume-url-storage  abort() in the middle of a chunk (after one was acknowledged); a NEW
//                          Upload finds the URL through FileUrlStorage + findPreviousUploads()
//                          + resumeFromPreviousUpload() and resumes at whatever offset the
//                          server reports (a HEAD checks it before);
//   4. parallel-concat     parallelUploads: 4 (tus concatenation) with the whole file's sha256:
//                          the final upload's blob is the file, and the 4 partial uploads
//                          (their URLs read from the creation responses via onAfterResponse)
//                          answer 404 afterwards;
//   5. method-override     overridePatchMethod: true (every append is a POST with
//                          X-HTTP-Method-Override: PATCH);
//   6. sha256-mismatch     a wrong `sha256` metadata: onError gets a DetailedError with status
//                          460 (code sha256-mismatch), the upload is failed, and no blob exists
//                          under either digest;
//   7. ietf-draft-03/-05   protocol 'ietf-draft-03' (Upload-Draft-Interop-Version: 5) and
//                          'ietf-draft-05' (version 6): one chunked upload each (careful
//                          creation, then appends with Upload-Complete), every response in the
//                          version asked for, the completing one naming the blob; blob verified.
//
// Every upload runs with `retryDelays: null`, so a failure shows at once; each check has a
// 120 s deadline. Each check uploads fresh random bytes, so none passes on another's blob.
//
// Setup (once, or in CI):  npm ci --prefix tests/interop/tusjs --no-audit --no-fund
// Usage:                   node tests/interop/tusjs/tus_js_interop.mjs --base-url http://127.0.0.1:PORT
// Prints one `PASS name` / `FAIL name: why` line per check, then
// `tus_js_interop: N passed, N failed`; exits 1 if any check failed.

import { createHash, generateKeyPairSync, randomBytes, randomInt, sign } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

import { DetailedError, FileUrlStorage, Upload } from 'tus-js-client'

const MIB = 1024 * 1024
const CHECK_TIMEOUT_MS = 120_000

// ---------------------------------------------------------------------------------------------
// Account: register with an Ed25519 identity key, sign the login challenge, get a bearer token.

async function postJson(url, body, expectStatus) {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  })
  const text = await r.text()
  if (r.status !== expectStatus) throw new Error(`POST ${url}: ${r.status} ${text}`)
  return JSON.parse(text)
}

async function registerAndLogin(base) {
  const phone = `+49151${String(randomInt(0, 1e8)).padStart(8, '0')}`
  const { publicKey, privateKey } = generateKeyPairSync('ed25519')
  const rawPublic = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url')
  await postJson(
    `${base}/v1/accounts`,
    { phone, name: 'tus-js interop', identity_key: rawPublic.toString('base64') },
    201,
  )
  const { challenge } = await postJson(`${base}/v1/auth/challenge`, { phone }, 200)
  const signature = sign(null, Buffer.from(challenge, 'base64'), privateKey)
  const { token } = await postJson(
    `${base}/v1/auth/token`,
    { phone, challenge, signature: signature.toString('base64') },
    200,
  )
  if (!token) throw new Error('token response without a token')
  return token
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** A failed expectation: reported by its message alone. */
class CheckFailed extends Error {}

function expect(cond, msg) {
  if (!cond) throw new CheckFailed(msg)
}

const sha256 = (data) => createHash('sha256').update(data).digest()
const hex = (data) => sha256(data).toString('hex')
const fileOf = (n) => randomBytes(n) // random, so no check is satisfied by another's blob

class Server {
  constructor(base, token) {
    this.base = base
    this.endpoint = `${base}/v1/uploads`
    this.auth = { Authorization: `Bearer ${token}` }
  }

  /** Options every Upload gets: endpoint, token, no retries (failures show at once). */
  options(extra = {}) {
    return { endpoint: this.endpoint, headers: { ...this.auth }, retryDelays: null, ...extra }
  }

  async head(url) {
    return fetch(url, { method: 'HEAD', headers: { ...this.auth, 'Tus-Resumable': '1.0.0' } })
  }

  async offset(url) {
    const r = await this.head(url)
    expect(r.status === 200, `HEAD ${url}: ${r.status}`)
    const offset = Number.parseInt(r.headers.get('upload-offset'), 10)
    expect(Number.isInteger(offset), `HEAD ${url}: Upload-Offset ${r.headers.get('upload-offset')}`)
    return offset
  }

  async blob(id) {
    const r = await fetch(`${this.base}/v1/blobs/${id}`, { headers: this.auth })
    return { status: r.status, bytes: Buffer.from(await r.arrayBuffer()) }
  }

  /**
   * The finished upload at `url` is the blob of `data`: the last response (if given) and a
   * HEAD name it in Sealpost-Blob-Id, HEAD's offset is the length, the blob has the bytes.
   */
  async verifyComplete(data, url, lastResponse) {
    const digest = hex(data)
    if (lastResponse) {
      const last = lastResponse.getHeader('Sealpost-Blob-Id')
      const status = lastResponse.getStatus()
      expect(last === digest, `last response (${status}) Sealpost-Blob-Id ${last} != ${digest}`)
    }
    const r = await this.head(url)
    expect(r.status === 200, `HEAD ${url} after completion: ${r.status}`)
    const headOffset = r.headers.get('upload-offset')
    expect(headOffset === String(data.length), `HEAD Upload-Offset ${headOffset} != ${data.length}`)
    const headBlob = r.headers.get('sealpost-blob-id')
    expect(headBlob === digest, `HEAD Sealpost-Blob-Id ${headBlob} != ${digest}`)
    const got = await this.blob(digest)
    expect(got.status === 200, `GET /v1/blobs/${digest}: ${got.status} ${got.bytes.subarray(0, 300)}`)
    const n = got.bytes.length
    expect(n === data.length, `blob has ${n} bytes, uploaded ${data.length}`)
    expect(got.bytes.equals(data), 'blob bytes differ from the uploaded file')
  }
}

/**
 * Uploads `data` with `options` to the end: resolves with the Upload and onSuccess's
 * lastResponse, rejects with onError's error or after the deadline. `prepare(upload)` runs
 * before start() (e.g. to resume from the URL storage).
 */
function uploadToEnd(data, options, { prepare } = {}) {
  let upload
  const done = new Promise((resolve, reject) => {
    upload = new Upload(data, { ...options, onSuccess: resolve, onError: reject })
  })
  return withTimeout(
    (async () => {
      if (prepare) await prepare(upload)
      upload.start()
      const payload = await done
      return { upload, lastResponse: payload?.lastResponse }
    })(),
    () => upload.abort(),
  )
}

function withTimeout(promise, onTimeout, ms = CHECK_TIMEOUT_MS) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.()
      reject(new Error(`timed out after ${ms / 1000} s`))
    }, ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Records each request's method and chosen headers (the documented onBeforeRequest hook). */
function requestLog() {
  const log = []
  const hook = (req) => {
    log.push({
      method: req.getMethod(),
      url: req.getURL(),
      offset: req.getHeader('Upload-Offset'),
      override: req.getHeader('X-HTTP-Method-Override'),
    })
  }
  return { log, hook }
}

function describe(err) {
  // A DetailedError's message already names the method, URL, status and body of the exchange.
  if (err instanceof CheckFailed || err instanceof DetailedError) return err.message
  return err?.stack ? String(err.stack).split('\n').slice(0, 2).join(' | ') : String(err)
}

// ---------------------------------------------------------------------------------------------
// Checks

async function checkSha256(s, encoding) {
  const data = fileOf(3 * MIB + 12345) // 4 chunks, the last one short
  const digest = sha256(data)
  const { upload, lastResponse } = await uploadToEnd(
    data,
    s.options({
      chunkSize: MIB,
      metadata: {
        filename: `tusjs-${encoding}.bin`,
        filetype: 'application/octet-stream',
        sha256: digest.toString(encoding),
      },
    }),
  )
  expect(upload.url?.startsWith(`${s.endpoint}/`), `upload URL ${upload.url}`)
  await s.verifyComplete(data, upload.url, lastResponse)
  // The JSON status keeps the metadata.
  const r = await fetch(upload.url, { headers: s.auth })
  expect(r.status === 200, `GET upload status: ${r.status}`)
  const st = await r.json()
  expect(st.blob_id === digest.toString('hex'), `status blob_id ${st.blob_id}`)
  expect(st.filename === `tusjs-${encoding}.bin`, `status filename ${st.filename}`)
}

/** Starts an upload of `data` and aborts it when `shouldAbort(state)` says so. */
function startAndAbort(data, options, shouldAbort) {
  const state = { acked: 0, sent: 0 }
  let upload
  const stopped = new Promise((resolve, reject) => {
    let aborting = false
    const maybeAbort = () => {
      if (!aborting && shouldAbort(state)) {
        aborting = true
        upload.abort().then(() => resolve({ upload, state }), reject)
      }
    }
    upload = new Upload(data, {
      ...options,
      onChunkComplete: (_size, accepted) => {
        state.acked = accepted
        maybeAbort()
      },
      onProgress: (sent) => {
        state.sent = Math.max(state.sent, sent)
        maybeAbort()
      },
      onSuccess: () => reject(new Error('the upload finished before it could be aborted')),
      onError: reject,
    })
    upload.start()
  })
  return withTimeout(stopped, () => upload.abort())
}

/** A resumed upload asked the server (HEAD), created nothing, and went on at `kept`. */
function expectResumedAt(log, kept) {
  const methods = log.map((r) => r.method).join(' ')
  expect(log[0]?.method === 'HEAD', `the resumed upload sent ${methods}, not a HEAD first`)
  expect(!methods.includes('POST'), `the resumed upload created a new one: ${methods}`)
  const first = log.find((r) => r.method === 'PATCH')?.offset
  expect(first === String(kept), `first resumed PATCH at Upload-Offset ${first}, server had ${kept}`)
}

async function checkResumeUploadUrl(s) {
  const data = fileOf(3 * MIB + 777)
  const metadata = { filename: 'resume-url.bin', sha256: hex(data) }
  const { upload: first, state } = await startAndAbort(
    data,
    s.options({ chunkSize: MIB, metadata }),
    ({ acked }) => acked >= MIB,
  )
  expect(state.acked === MIB, `aborted after ${state.acked} acknowledged bytes, wanted ${MIB}`)
  const url = first.url
  expect(url, 'the aborted upload has no URL')
  const kept = await s.offset(url)
  expect(kept === state.acked, `server offset ${kept} != acknowledged ${state.acked}`)

  const { log, hook } = requestLog()
  let firstAccepted = null
  const { upload: second, lastResponse } = await uploadToEnd(
    data,
    s.options({
      chunkSize: MIB,
      metadata,
      uploadUrl: url,
      onBeforeRequest: hook,
      onChunkComplete: (size, accepted) => {
        firstAccepted ??= accepted - size
      },
    }),
  )
  expect(second.url === url, `resumed at ${second.url}, not ${url}`)
  expectResumedAt(log, kept)
  expect(firstAccepted === kept, `first resumed chunk started at ${firstAccepted}, server had ${kept}`)
  await s.verifyComplete(data, url, lastResponse)
}

async function checkResumeUrlStorage(s) {
  const dir = mkdtempSync(join(tmpdir(), 'tusjs-urls-'))
  try {
    const urlStorage = new FileUrlStorage(join(dir, 'uploads.json'))
    const data = fileOf(3 * MIB + 999)
    const opts = {
      chunkSize: MIB,
      metadata: { filename: 'resume-storage.bin', sha256: hex(data) },
      urlStorage,
      removeFingerprintOnSuccess: true,
    }
    // Abort while the second chunk is on the wire: one chunk acknowledged, more sent.
    const { upload: first, state } = await startAndAbort(
      data,
      s.options(opts),
      ({ acked, sent }) => acked >= MIB && sent > acked,
    )
    const url = first.url
    expect(url, 'the aborted upload has no URL')
    const kept = await s.offset(url)
    expect(
      kept >= state.acked && kept <= state.acked + MIB,
      `server offset ${kept} outside [${state.acked}, ${state.acked + MIB}] ` +
        `(acked ${state.acked}, sent ${state.sent})`,
    )

    const { log, hook } = requestLog()
    const { upload: second, lastResponse } = await uploadToEnd(
      data,
      s.options({ ...opts, onBeforeRequest: hook }),
      {
        prepare: async (upload) => {
          const previous = await upload.findPreviousUploads()
          expect(previous.length === 1, `findPreviousUploads: ${JSON.stringify(previous)}`)
          expect(previous[0].uploadUrl === url, `stored URL ${previous[0].uploadUrl} != ${url}`)
          upload.resumeFromPreviousUpload(previous[0])
        },
      },
    )
    expect(second.url === url, `resumed at ${second.url}, not ${url}`)
    expectResumedAt(log, kept)
    await s.verifyComplete(data, url, lastResponse)
    const left = await second.findPreviousUploads()
    expect(left.length === 0, `URL storage still holds ${JSON.stringify(left)} after success`)
    return `server kept ${kept} of ${state.sent} bytes sent (${state.acked} acknowledged)`
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function checkParallelConcat(s) {
  const data = fileOf(3 * MIB + 54321)
  const partials = []
  let finalConcat = null
  const { upload, lastResponse } = await uploadToEnd(
    data,
    s.options({
      parallelUploads: 4,
      chunkSize: MIB,
      metadata: { filename: 'parallel.bin', filetype: 'application/octet-stream', sha256: hex(data) },
      onAfterResponse: (req, res) => {
        if (req.getMethod() !== 'POST') return
        const concat = req.getHeader('Upload-Concat')
        if (concat === 'partial' && res.getStatus() === 201) {
          partials.push(new URL(res.getHeader('Location'), s.endpoint).href)
        } else if (concat?.startsWith('final;')) {
          finalConcat = concat
        }
      },
    }),
  )
  expect(
    partials.length === 4 && new Set(partials).size === 4,
    `partial uploads created: ${JSON.stringify(partials)}`,
  )
  expect(finalConcat, 'no final Upload-Concat creation was sent')
  const listed = finalConcat.slice('final;'.length).trim().split(/\s+/)
  expect(
    listed.length === 4 && listed.every((u) => partials.includes(u)),
    `final lists ${JSON.stringify(listed)}, created ${JSON.stringify(partials)}`,
  )
  expect(upload.url && !partials.includes(upload.url), `final upload URL ${upload.url}`)
  await s.verifyComplete(data, upload.url, lastResponse)
  const left = []
  for (const url of partials) {
    const r = await s.head(url)
    if (r.status !== 404) left.push(`${url} -> ${r.status} (offset ${r.headers.get('upload-offset')})`)
  }
  expect(left.length === 0, `partial uploads still there after the final one: ${left.join('; ')}`)
}

async function checkMethodOverride(s) {
  const data = fileOf(2 * MIB + 4242)
  const { log, hook } = requestLog()
  const { upload, lastResponse } = await uploadToEnd(
    data,
    s.options({
      chunkSize: MIB,
      overridePatchMethod: true,
      metadata: { filename: 'override.bin', sha256: hex(data) },
      onBeforeRequest: hook,
    }),
  )
  const appends = log.filter((r) => r.override === 'PATCH')
  expect(appends.length === 3 && appends.every((r) => r.method === 'POST' && r.url === upload.url),
    `appends sent: ${JSON.stringify(log)}`)
  expect(!log.some((r) => r.method === 'PATCH'), `a real PATCH was sent: ${JSON.stringify(log)}`)
  await s.verifyComplete(data, upload.url, lastResponse)
}

async function checkSha256Mismatch(s) {
  const data = fileOf(2 * MIB + 1)
  const declared = hex(fileOf(64)) // the digest of other bytes
  let url = null
  const err = await uploadToEnd(
    data,
    s.options({
      chunkSize: MIB,
      metadata: { filename: 'wrong-digest.bin', sha256: declared },
      onAfterResponse: (req, res) => {
        if (req.getMethod() === 'POST' && res.getHeader('Location')) {
          url = new URL(res.getHeader('Location'), s.endpoint).href
        }
      },
    }),
  ).then(
    ({ upload }) => {
      throw new CheckFailed(`the upload with a wrong sha256 succeeded at ${upload.url}`)
    },
    (e) => e,
  )
  expect(err instanceof DetailedError, `onError got ${describe(err)}, not a DetailedError`)
  const res = err.originalResponse
  expect(res, `DetailedError without a response: ${err.message}`)
  expect(res.getStatus() === 460, `status ${res.getStatus()}, wanted 460: ${res.getBody()}`)
  let code
  try {
    code = JSON.parse(res.getBody()).code
  } catch {
    code = undefined
  }
  expect(code === 'sha256-mismatch', `460 body code ${code}: ${res.getBody()}`)
  const method = err.originalRequest?.getMethod()
  expect(method === 'PATCH', `460 answered ${method}, not the completing PATCH`)
  for (const id of [hex(data), declared]) {
    const got = await s.blob(id)
    expect(got.status === 404, `GET /v1/blobs/${id} after the mismatch: ${got.status}`)
  }
  expect(url, 'no upload URL was seen')
  const r = await fetch(url, { headers: s.auth })
  expect(r.status === 200, `GET upload status: ${r.status}`)
  const st = await r.json()
  expect(st.state === 'failed', `upload state ${st.state}, wanted failed: ${JSON.stringify(st)}`)
  expect(!st.blob_id, `failed upload names blob ${st.blob_id}`)
}

async function checkIetfDraft(s, protocol, version) {
  const data = fileOf(2 * MIB + 999)
  const { log, hook } = requestLog()
  const answered = []
  const { upload, lastResponse } = await uploadToEnd(
    data,
    s.options({
      protocol,
      chunkSize: MIB,
      metadata: { filename: `${protocol}.bin`, filetype: 'application/octet-stream', sha256: hex(data) },
      onBeforeRequest: hook,
      onAfterResponse: (req, res) => {
        const v = res.getHeader('Upload-Draft-Interop-Version')
        answered.push(`${req.getMethod()} ${res.getStatus()} v${v}`)
      },
    }),
  )
  expect(upload.url?.startsWith(`${s.endpoint}/`), `upload URL ${upload.url}`)
  const methods = log.map((r) => r.method).join(' ')
  expect(methods === 'POST PATCH PATCH PATCH', `requests: ${methods}`)
  // Each response is in the version asked for (the server answers every request in its own).
  expect(answered.every((a) => a.endsWith(` v${version}`)), `responses: ${answered.join(', ')}`)
  await s.verifyComplete(data, upload.url, lastResponse)
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const { values } = parseArgs({ options: { 'base-url': { type: 'string' } } })
  if (!values['base-url']) {
    console.error('usage: node tus_js_interop.mjs --base-url http://127.0.0.1:PORT')
    process.exit(2)
  }
  const base = values['base-url'].replace(/\/+$/, '')
  const s = new Server(base, await registerAndLogin(base))

  const checks = [
    ['sha256-hex', () => checkSha256(s, 'hex')],
    ['sha256-base64', () => checkSha256(s, 'base64')],
    ['resume-upload-url', () => checkResumeUploadUrl(s)],
    ['resume-url-storage', () => checkResumeUrlStorage(s)],
    ['parallel-concat', () => checkParallelConcat(s)],
    ['method-override', () => checkMethodOverride(s)],
    ['sha256-mismatch', () => checkSha256Mismatch(s)],
    ['ietf-draft-03', () => checkIetfDraft(s, 'ietf-draft-03', 5)],
    ['ietf-draft-05', () => checkIetfDraft(s, 'ietf-draft-05', 6)],
  ]
  let passed = 0
  let failed = 0
  for (const [name, fn] of checks) {
    try {
      const note = await withTimeout(fn(), null)
      console.log(`PASS ${name}${note ? ` (${note})` : ''}`)
      passed++
    } catch (err) {
      console.log(`FAIL ${name}: ${describe(err)}`)
      failed++
    }
  }
  console.log(`tus_js_interop: ${passed} passed, ${failed} failed`)
  process.exit(failed ? 1 : 0)
}

main().catch((err) => {
  console.log(`FAIL setup: ${describe(err)}`)
  console.log('tus_js_interop: 0 passed, 1 failed')
  process.exit(1)
})
