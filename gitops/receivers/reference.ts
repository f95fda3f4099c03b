import { InputError } from '../../core/errors.ts';

/**
 * Image reference checks, after the grammar of the distribution project's `reference`
 * package (github.com/distribution/reference, reference.go):
 *
 *   name      := [domain '/'] path-component ['/' path-component]*
 *   domain    := host [':' port]           host: DNS name, IPv4, or [IPv6]
 *   path-comp := [a-z0-9]+ ((separator) [a-z0-9]+)*   separator: [._] | __ | -+
 *   tag       := [\w][\w.-]{0,127}
 *   digest    := sha256:[a-f0-9]{64}       (the only algorithm registries emit)
 *
 * Everything a registry tells us passes through here before it can reach a manifest, a
 * file path or a commit message: nothing that fails these patterns can carry a newline, a
 * YAML comment, a `..` segment or a second `:`.
 */

/** distribution's NameTotalLengthMax: the whole name, domain included. */
export const MAX_REPOSITORY_LENGTH = 255;

const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]{1,5})?$`);

/** A repository split the way Docker splits it (distribution/reference normalize.go). */
export interface RepositoryParts {
  /** `registry.example.com:5000`, or undefined when the name has no registry host (Docker Hub). */
  domain: string | undefined;
  /** `team/app`. */
  path: string;
}

/** A full image reference, parsed and validated. */
export interface ImageReference extends RepositoryParts {
  /** Domain and path: `registry.example.com/team/app`. */
  repository: string;
  tag: string | undefined;
  digest: string | undefined;
}

/** The 400 `invalid_reference` for `field`, quoting at most 80 characters of the value. */
export function invalidReference(field: string, value: string, why: string): InputError {
  const shown = value.length > 80 ? `${value.slice(0, 80)}…` : value;
  return new InputError('invalid_reference', `${field} ${JSON.stringify(shown)} is not valid: ${why}`, 400, { field, value: shown });
}

function refuse(field: string, value: string, why: string): never {
  throw invalidReference(field, value, why);
}

/**
 * Splits a repository into domain and path. The first component is a domain only when it
 * looks like one (a dot, a port, `localhost`, or an IPv6 literal), as Docker decides it;
 * otherwise it is a path component and must be lower case, so `Team/app` is refused
 * rather than read as a registry host called `Team`.
 */
export function splitRepository(repository: string): RepositoryParts {
  const slash = repository.indexOf('/');
  if (slash > 0) {
    const first = repository.slice(0, slash);
    if (looksLikeDomain(first)) return { domain: first, path: repository.slice(slash + 1) };
  }
  return { domain: undefined, path: repository };
}

function looksLikeDomain(first: string): boolean {
  return first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[');
}

/**
 * True for a registry host with optional port that Docker would also read as one:
 * `registry.example.com:5000`, `10.0.0.1`, `[::1]:5000`, `localhost`.
 */
export function isValidDomain(domain: string): boolean {
  return domain.length <= MAX_REPOSITORY_LENGTH && looksLikeDomain(domain) && DOMAIN.test(domain);
}

/** True for a repository (optional registry host, then lower-case path components). */
export function isValidRepository(repository: string): boolean {
  if (repository.length === 0 || repository.length > MAX_REPOSITORY_LENGTH) return false;
  const { domain, path } = splitRepository(repository);
  if (domain !== undefined && !DOMAIN.test(domain)) return false;
  return path.split('/').every((c) => PATH_COMPONENT.test(c));
}

/** True for a tag: 1 to 128 characters of `[A-Za-z0-9_.-]`, not starting with `.` or `-`. */
export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}

/** True for a `sha256:` digest in lower-case hex. */
export function isValidDigest(digest: string): boolean {
  return DIGEST.test(digest);
}

const REPOSITORY_RULE = `expected [host[:port]/]path with lower-case components separated by "/", at most ${MAX_REPOSITORY_LENGTH} characters`;
const TAG_RULE = 'expected 1-128 characters of A-Z a-z 0-9 _ . -, not starting with . or -';
const DIGEST_RULE = 'expected sha256: and 64 lower-case hex digits';

/**
 * Refuses anything that is not a plain repository, tag and (optional) digest with a 400
 * `invalid_reference`, naming the offending field in `details.field`.
 */
export function validateReference(ref: { repository: string; tag: string; digest?: string | undefined }): void {
  if (!isValidRepository(ref.repository)) refuse('repository', ref.repository, REPOSITORY_RULE);
  if (!isValidTag(ref.tag)) refuse('tag', ref.tag, TAG_RULE);
  if (ref.digest !== undefined && !isValidDigest(ref.digest)) refuse('digest', ref.digest, DIGEST_RULE);
}

/**
 * Parses `[host[:port]/]path[:tag][@sha256:…]` into its parts, validating each (400
 * `invalid_reference` otherwise). A `:` separates a tag only after the last `/`, so
 * `registry:5000/app` has no tag.
 *
 * @example
 *   parseImageReference('harbor.example.com/library/app:1.2.3')
 *   // { repository: 'harbor.example.com/library/app', domain: 'harbor.example.com',
 *   //   path: 'library/app', tag: '1.2.3', digest: undefined }
 */
export function parseImageReference(ref: string): ImageReference {
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!isValidDigest(digest)) refuse('digest', digest, DIGEST_RULE);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isValidTag(tag)) refuse('tag', tag, TAG_RULE);
  }
  if (!isValidRepository(rest)) refuse('repository', rest, REPOSITORY_RULE);
  return { repository: rest, ...splitRepository(rest), tag, digest };
}
