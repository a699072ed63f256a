// The SMART JavaScript client (npm fhirclient, Node adapter) completes a standalone launch with PKCE against the
// real caduceus binary, without a browser: fhirclient's authorize() builds the authorization request, this script
// follows our sign-in pages with fetch (cookie, hidden fields, password, consent) as a user would, then
// fhirclient's ready() exchanges the code and a FHIR request is made with the token.
//
// ctest smart_js.fhirclient runs it with CADUCEUS_BINARY set; exit 0 = passed. fhirclient is installed under
// tests/smart_js/node_modules by `make build`/`make test` (npm ci, from package-lock.json).
"use strict";

const assert = require("node:assert/strict");
const { spawn, execFileSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const readline = require("node:readline");

let smart;
try {
  smart = require("fhirclient");
} catch (e) {
  console.error("fhirclient is not installed: run `make build` (or `npm ci --prefix tests/smart_js`)");
  process.exit(1);
}

const binary = process.env.CADUCEUS_BINARY;
if (!binary) {
  console.error("CADUCEUS_BINARY is not set");
  process.exit(1);
}
const PASSWORD = "correct horse battery";
const REDIRECT = "http://app.test/callback";

// The environment without any CADUCEUS_* variable, so that nothing outside changes the server.
function cleanEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("CADUCEUS_")) env[k] = v;
  return env;
}

function cli(args) {
  execFileSync(binary, args, { stdio: ["ignore", "pipe", "pipe"], env: cleanEnv() });
}

// Starts `caduceus serve` on port 0; resolves with { child, base } once it prints its URL.
function startServer(db, dataDir) {
  return new Promise((resolve, reject) => {
    const child = spawn(
      binary,
      ["serve", "--listen", "127.0.0.1:0", "--db", db, "--auth", "smart", "--data-dir", dataDir],
      { env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] }
    );
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code) => reject(new Error(`the server exited (${code}): ${stderr}`)));
    const lines = readline.createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      const m = /listening on (http:\/\/\S+)/.exec(line);
      if (m) resolve({ child, base: m[1] });
    });
  });
}

// The hidden fields of a sign-in page's form.
function hiddenFields(html) {
  const out = {};
  for (const m of html.matchAll(/<input type="hidden" name="([a-z_]+)" value="([^"]*)">/g)) out[m[1]] = m[2];
  return out;
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "caduceus-fhirclient-"));
  let server;
  try {
    const db = "sqlite:" + path.join(dir, "caduceus.db");
    fs.writeFileSync(
      path.join(dir, "people.ndjson"),
      '{"resourceType":"Patient","id":"p1","name":[{"given":["Alice"],"family":"Ames"}]}\n'
    );
    fs.writeFileSync(path.join(dir, "password.txt"), PASSWORD + "\n");
    cli(["import", "--db", db, path.join(dir, "people.ndjson")]);
    cli(["admin", "user", "add", "alice", "--role", "patient", "--fhir-user", "Patient/p1",
      "--password-file", path.join(dir, "password.txt"), "--db", db]);
    cli(["admin", "client", "add", "--db", db, "--id", "js-app", "--type", "public", "--name", "JS app",
      "--redirect-uri", REDIRECT, "--scope", "openid fhirUser launch/patient patient/*.rs offline_access"]);
    server = await startServer(db, path.join(dir, "data"));
    const base = server.base;
    const origin = base.replace(/\/fhir$/, "");

    // 1. fhirclient's authorize step, as the app's /launch handler would run it.
    const session = {};
    const appRequest = (url) => ({ url, headers: { host: "app.test" }, socket: {}, session });
    let authorizeUrl = null;
    const launchResponse = {
      writeHead(status, headers) {
        assert.equal(status, 302);
        authorizeUrl = headers.location;
      },
      end() {},
    };
    await smart(appRequest("/launch"), launchResponse).authorize({
      iss: base,
      clientId: "js-app",
      scope: "openid fhirUser launch/patient patient/*.rs offline_access",
      redirectUri: REDIRECT,
      pkceMode: "required",
    });
    assert.ok(authorizeUrl && authorizeUrl.startsWith(origin + "/auth/authorize?"), `authorize URL: ${authorizeUrl}`);
    const asked = new URL(authorizeUrl).searchParams;
    assert.equal(asked.get("code_challenge_method"), "S256");
    assert.equal(asked.get("aud"), base);
    const state = asked.get("state");

    // 2. The browser: the sign-in page, the password, the consent.
    let r = await fetch(authorizeUrl, { redirect: "manual", headers: { "Accept-Language": "en" } });
    assert.equal(r.status, 200);
    const cookie = (r.headers.get("set-cookie") || "").split(";")[0];
    assert.match(cookie, /^caduceus_signin=/);
    let html = await r.text();
    assert.match(html, /<label for="username">User name<\/label>/);
    const post = (fields) =>
      fetch(origin + "/auth/authorize", {
        method: "POST",
        redirect: "manual",
        headers: { "Content-Type": "application/x-www-form-urlencoded", Cookie: cookie },
        body: new URLSearchParams(fields).toString(),
      });
    r = await post({ ...hiddenFields(html), username: "alice", password: PASSWORD });
    assert.equal(r.status, 200);
    html = await r.text();
    assert.equal(hiddenFields(html).step, "consent", html);
    r = await post({ ...hiddenFields(html), decision: "approve" });
    assert.equal(r.status, 302);
    const callback = new URL(r.headers.get("location"));
    assert.equal(callback.origin + callback.pathname, REDIRECT);
    assert.equal(callback.searchParams.get("state"), state);
    assert.ok(callback.searchParams.get("code"));

    // 3. fhirclient's ready(): the app's callback handler exchanges the code (with the PKCE verifier).
    const client = await smart(appRequest(callback.pathname + callback.search), {}).ready();
    assert.equal(client.patient.id, "p1");
    assert.equal(client.getFhirUser(), "Patient/p1");
    assert.equal(client.getUserType(), "Patient");
    const tokenResponse = client.state.tokenResponse;
    assert.equal(tokenResponse.token_type, "Bearer");
    assert.equal(tokenResponse.scope, "openid fhirUser launch/patient patient/*.rs offline_access");
    assert.equal(tokenResponse.need_patient_banner, true);
    assert.ok(tokenResponse.refresh_token, "a refresh token for offline_access");
    const claims = JSON.parse(Buffer.from(tokenResponse.access_token.split(".")[1], "base64url").toString());
    assert.equal(claims.client_id, "js-app");
    assert.equal(claims.patient, "p1");
    assert.equal(claims.fhirUser, "Patient/p1");

    // 4. A request with the token: Alice's own record (patient/*.rs on her compartment).
    const patient = await client.request("Patient/p1");
    assert.equal(patient.resourceType, "Patient");
    assert.equal(patient.id, "p1");
    // fhirclient's refresh() rotates the refresh token.
    await client.refresh();
    assert.notEqual(client.state.tokenResponse.refresh_token, tokenResponse.refresh_token);
    console.log("fhirclient completed a standalone launch with PKCE against " + base);
  } finally {
    if (server) {
      server.child.removeAllListeners("exit");
      server.child.kill("SIGTERM");
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e && e.stack ? e.stack : e);
    process.exit(1);
  }
);
