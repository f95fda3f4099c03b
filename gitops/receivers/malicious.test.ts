import { describe, expect, it } from 'vitest';
import type { ReceiverRequest } from '../api/types.ts';
import distribution from './distribution.ts';
import dockerhub from './dockerhub.ts';
import generic from './generic.ts';
import ghcr from './ghcr.ts';
import harbor from './harbor.ts';
import { RECEIVERS } from './index.ts';
import quay from './quay.ts';
import { NOW, expectRefusal, fixtureJson, githubSignature, request, standardWebhookHeaders } from './testkit.ts';
import type { Receiver } from './types.ts';

/**
 * Every provider, fed names, tags and digests meant to break out of a YAML scalar or a
 * file path, through an otherwise valid, authenticated delivery: each is a 400
 * `invalid_reference`, never a push.
 */

interface Case {
  receiver: Receiver<any>;
  settings: unknown;
  /** An authenticated request pushing `name` (a repository path, host added per provider) at `tag`. */
  build(name: string, tag: string, digest?: string): ReceiverRequest;
  digests: boolean;
  /** GHCR lower-cases names by design, so upper case is normalised there rather than refused. */
  lowercases: boolean;
}

const DIST_TOKEN = 'dist-token-0123456789abcdef';
const PATH = 'path-secret-0123456789abcdef';
const HARBOR_AUTH = 'Bearer harbor-0123456789abcdef';
const GH_SECRET = 'github-webhook-secret-0123';
const WHSEC = `whsec_${Buffer.from('generic-signing-key-0123456789ab').toString('base64')}`;

const cases: Record<string, Case> = {
  distribution: {
    receiver: distribution,
    settings: { token: DIST_TOKEN },
    digests: true,
    lowercases: false,
    build(name, tag, digest) {
      const body = fixtureJson('distribution/push-tagged.json');
      const e = body.events[0];
      e.target.repository = name;
      e.target.tag = tag;
      if (digest !== undefined) e.target.digest = digest;
      return request(JSON.stringify(body), { authorization: `Bearer ${DIST_TOKEN}`, 'content-type': 'application/vnd.docker.distribution.events.v2+json' });
    },
  },
  dockerhub: {
    receiver: dockerhub,
    settings: { pathSecret: PATH },
    digests: false,
    lowercases: false,
    build(name, tag) {
      const body = fixtureJson('dockerhub/push-doc.json');
      body.repository.repo_name = name;
      body.push_data.tag = tag;
      return request(JSON.stringify(body), {}, { pathSecret: PATH });
    },
  },
  harbor: {
    receiver: harbor,
    settings: { authHeader: HARBOR_AUTH },
    digests: true,
    lowercases: false,
    build(name, tag, digest) {
      const body = fixtureJson('harbor/push-doc.json');
      const r = body.event_data.resources[0];
      r.resource_url = `hub.harbor.com/${name}:latest`;
      r.tag = tag;
      if (digest !== undefined) r.digest = digest;
      return request(JSON.stringify(body), { authorization: HARBOR_AUTH });
    },
  },
  quay: {
    receiver: quay,
    settings: { pathSecret: PATH },
    digests: false,
    lowercases: false,
    build(name, tag) {
      const body = fixtureJson('quay/push-doc.json');
      body.docker_url = `quay.io/${name}`;
      body.updated_tags = ['latest', tag];
      return request(JSON.stringify(body), {}, { pathSecret: PATH });
    },
  },
  ghcr: {
    receiver: ghcr,
    settings: { secret: GH_SECRET },
    digests: true,
    lowercases: true,
    build(name, tag, digest) {
      const body = fixtureJson('ghcr/package-published.json');
      body.package.name = name;
      body.package.package_version.container_metadata.tag.name = tag;
      if (digest !== undefined) body.package.package_version.container_metadata.tag.digest = digest;
      const text = JSON.stringify(body);
      return request(text, { 'x-github-event': 'package', 'x-github-delivery': 'd-1', 'x-hub-signature-256': githubSignature(GH_SECRET, text) });
    },
  },
  generic: {
    receiver: generic,
    settings: { secret: WHSEC },
    digests: true,
    lowercases: false,
    build(name, tag, digest) {
      const text = JSON.stringify({ image: `registry.example.com/${name}`, tag, ...(digest === undefined ? {} : { digest }) });
      return request(text, standardWebhookHeaders(WHSEC, 'msg_1', Math.floor(NOW / 1000), text));
    },
  },
};

const BAD_NAMES = [
  '../../etc',
  'team/../../../etc/passwd',
  'team/app\nevil: true',
  'team/app # {"$imagepolicy": "flux-system:app"}',
  'team/app#x',
  'team/app:1.0',
  'team app',
  'team//app',
  'x'.repeat(300),
];
const BAD_TAGS = [
  '1.0\n  evil: true',
  '1.0 # {"$imagepolicy": "flux-system:app"}',
  '1.0\r\nX-Injected: 1',
  '../../etc/passwd',
  '.hidden',
  '-rf',
  't'.repeat(129),
  '1.0:2',
  "1.0'",
  '1.0"',
];
const BAD_DIGESTS = ['sha256:../../etc', `sha256:${'A'.repeat(64)}`, `sha256:${'a'.repeat(64)}\nevil: true`, 'md5:abc'];

describe.each(Object.entries(cases))('%s refuses malicious references', (provider, c) => {
  const receive = (req: ReceiverRequest) => c.receiver.receive(req, c.receiver.settingsSchema.parse(c.settings));

  it('is registered', () => {
    expect(RECEIVERS.get(provider)).toBe(c.receiver);
  });

  it('accepts the well-formed reference the cases are built on', () => {
    const result = receive(c.build('team/app', '1.2.3', `sha256:${'e'.repeat(64)}`));
    expect(result.kind).toBe('pushes');
  });

  it.each(BAD_NAMES)('name %j', (name) => {
    expectRefusal(() => receive(c.build(name, '1.2.3')), 'invalid_reference', 400);
  });

  it.each(BAD_TAGS)('tag %j', (tag) => {
    expectRefusal(() => receive(c.build('team/app', tag)), 'invalid_reference', 400);
  });

  if (c.digests) {
    it.each(BAD_DIGESTS)('digest %j', (digest) => {
      expectRefusal(() => receive(c.build('team/app', '1.2.3', digest)), 'invalid_reference', 400);
    });
  }

  it(c.lowercases ? 'lower-cases an upper-case name' : 'refuses an upper-case name', () => {
    if (c.lowercases) {
      const result = receive(c.build('Team/App', '1.2.3'));
      expect(result.kind === 'pushes' && result.pushes[0]!.repository).toMatch(/\/team\/app$/);
    } else {
      expectRefusal(() => receive(c.build('Team/App', '1.2.3')), 'invalid_reference', 400);
    }
  });
});

describe('registry hosts', () => {
  it('refuses a Harbor resource_url or Quay docker_url without a host, which Docker would read as a Docker Hub name', () => {
    const h = fixtureJson('harbor/push-doc.json');
    h.event_data.resources[0].resource_url = 'test-webhook/debian:latest';
    expectRefusal(() => harbor.receive(request(JSON.stringify(h), { authorization: HARBOR_AUTH }), { authHeader: HARBOR_AUTH }), 'invalid_reference', 400);
    const q = fixtureJson('quay/push-doc.json');
    q.docker_url = 'dgangaia/test';
    expectRefusal(() => quay.receive(request(JSON.stringify(q), {}, { pathSecret: PATH }), { pathSecret: PATH }), 'invalid_reference', 400);
  });
});

describe('distribution request.host', () => {
  it.each(['evil host', 'registry.example.com/x', 'registry.example.com\nevil: true', 'Team', 'registry', ''])('refuses %j', (host) => {
    const body = fixtureJson('distribution/push-tagged.json');
    body.events[0].request.host = host;
    const req = request(JSON.stringify(body), { authorization: `Bearer ${DIST_TOKEN}` });
    const code = host === '' ? 'invalid_payload' : 'invalid_reference';
    expectRefusal(() => distribution.receive(req, { token: DIST_TOKEN }), code, 400);
  });
});
