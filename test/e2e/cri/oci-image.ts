// Test images for the CRI suites, made without a registry: a rootfs tarball
// becomes a one-layer OCI image layout (image-spec: oci-layout, index.json,
// blobs/sha256), packed as a tar that `ctr images import` loads. The
// layer is the tarball itself, uncompressed, so its digest is its diff id.
// Archives are cached beside the tarball they come from (outside the repo).

import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { execa } from 'execa';

export interface ImageOptions {
  /** A tar of the root filesystem (numeric owners, xattrs kept). */
  rootfsTar: string;
  /** The name the image gets, e.g. localhost/oci-userns/debian-systemd:1. */
  name: string;
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  stopSignal?: string;
  /** Where the archive goes; default: beside rootfsTar. */
  cacheDir?: string;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

const sha256Text = (text: string) => createHash('sha256').update(text).digest('hex');

/** The OCI archive for `opts` (built once per tarball version and image config); returns its path. */
export async function ociArchive(opts: ImageOptions): Promise<string> {
  const stat = statSync(opts.rootfsTar);
  const key = sha256Text(JSON.stringify({ ...opts, size: stat.size, mtime: stat.mtimeMs })).slice(0, 16);
  const cache = opts.cacheDir ?? dirname(opts.rootfsTar);
  const archive = join(cache, `oci-image-${key}.tar`);
  if (existsSync(archive)) return archive;
  const work = join(cache, `oci-image-${key}.build`);
  rmSync(work, { recursive: true, force: true });
  const blobs = join(work, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  try {
    const layerDigest = await sha256File(opts.rootfsTar);
    // A link, not a copy: tar -h stores the file's content under the blob's name.
    symlinkSync(opts.rootfsTar, join(blobs, layerDigest));
    const writeBlob = (value: unknown) => {
      const text = JSON.stringify(value);
      const digest = sha256Text(text);
      writeFileSync(join(blobs, digest), text);
      return { digest: `sha256:${digest}`, size: Buffer.byteLength(text) };
    };
    const config = writeBlob({
      architecture: 'amd64',
      os: 'linux',
      config: {
        Env: opts.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        ...(opts.entrypoint ? { Entrypoint: opts.entrypoint } : {}),
        ...(opts.cmd ? { Cmd: opts.cmd } : {}),
        ...(opts.stopSignal ? { StopSignal: opts.stopSignal } : {}),
      },
      rootfs: { type: 'layers', diff_ids: [`sha256:${layerDigest}`] },
    });
    const manifest = writeBlob({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${layerDigest}`, size: stat.size }],
    });
    writeFileSync(join(work, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    const tag = opts.name.slice(opts.name.lastIndexOf(':') + 1);
    writeFileSync(
      join(work, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, platform: { architecture: 'amd64', os: 'linux' }, annotations: { 'io.containerd.image.name': opts.name, 'org.opencontainers.image.ref.name': tag } }],
      }),
    );
    await execa('tar', ['-C', work, '-chf', `${archive}.part`, 'oci-layout', 'index.json', 'blobs']);
    renameSync(`${archive}.part`, archive);
  } finally {
    rmSync(work, { recursive: true, force: true });
    rmSync(`${archive}.part`, { force: true });
  }
  return archive;
}

/** A busybox-static rootfs tarball for the pod's sandbox (pause) container, cached in `cacheDir`. */
export async function busyboxTarball(cacheDir: string, busybox = '/bin/busybox'): Promise<string> {
  const tarball = join(cacheDir, 'busybox-rootfs.tar');
  if (existsSync(tarball) && statSync(tarball).mtimeMs >= statSync(busybox).mtimeMs) return tarball;
  const work = join(cacheDir, 'busybox-rootfs.build');
  rmSync(work, { recursive: true, force: true });
  try {
    for (const d of ['bin', 'proc', 'sys', 'dev', 'etc', 'tmp']) mkdirSync(join(work, d), { recursive: true, mode: 0o755 });
    await execa('cp', [busybox, join(work, 'bin', 'busybox')]);
    for (const applet of ['sh', 'sleep']) symlinkSync('busybox', join(work, 'bin', applet));
    await execa('tar', ['-C', work, '--numeric-owner', '-cf', `${tarball}.part`, '.']);
    renameSync(`${tarball}.part`, tarball);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return tarball;
}
