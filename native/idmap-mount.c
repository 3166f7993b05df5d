/*
 * oci-userns-idmap: the one system-call job Node.js cannot do itself.
 *
 * It makes an ID-mapped clone of a mount tree and puts it over a path,
 * optionally inside another process's mount namespace, with the id mapping
 * of a user namespace given as a file (/proc/PID/ns/user). Entering a mount
 * namespace takes setns(CLONE_NEWNS), which the kernel refuses (EINVAL) to a
 * multi-threaded process such as node; hence this small single-threaded
 * program, in the manner of runc's nsexec.
 *
 *   oci-userns-idmap mount --userns FILE [--mntns FILE] SOURCE [TARGET]
 *       open_tree(SOURCE, OPEN_TREE_CLONE|AT_RECURSIVE): a detached copy of
 *       the mount at SOURCE with every mount below it; mount_setattr(
 *       MOUNT_ATTR_IDMAP, FILE) on the copy's top mount only (the mounts
 *       below, such as the runtime's /proc and /dev, keep their own ids and
 *       many of them refuse an idmap); move_mount() of the copy over TARGET
 *       (default: SOURCE). Any failure before move_mount leaves nothing
 *       behind: closing the detached copy unmounts it.
 *       Prints on stdout one line of timings, e.g.
 *       "ok setns_us=41 open_tree_us=30 mount_setattr_us=6 move_mount_us=12".
 *   oci-userns-idmap probe [--userns FILE] [--mntns FILE] PATH
 *       The same up to mount_setattr, then drops the copy: whether the mount
 *       holding PATH accepts an idmap, changing nothing. Without --userns it
 *       makes a throwaway user namespace (0 -> 65534, one id).
 *
 * Exit status (lib/rootfs/idmap-mount.ts maps them to typed errors):
 *   0  done (probe: supported)
 *   2  bad arguments (usage, a relative path, a namespace file of the wrong kind)
 *   4  not supported: the kernel or the filesystem refused the idmap
 *      (ENOSYS: kernel older than 5.12; mount_setattr EINVAL: the filesystem
 *      does not allow idmapped mounts, e.g. overlayfs, fuse, proc; EPERM: the
 *      mount is already idmapped or belongs to another user namespace);
 *      nothing was changed, the caller falls back to chown
 *   6  another system call failed (message on stderr)
 * Errors: one line on stderr, "oci-userns-idmap: WHAT: PATH: STRERROR".
 *
 * Sources: open_tree(2), move_mount(2), mount_setattr(2), setns(2),
 * ioctl_ns(2); the kernel's can_idmap_mount() in fs/namespace.c for which
 * errno means "not supported".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Syscall numbers of the common table (x86_64, arm64, riscv, ...): older libc headers lack them. */
#ifndef __NR_open_tree
#define __NR_open_tree 428
#endif
#ifndef __NR_move_mount
#define __NR_move_mount 429
#endif
#ifndef __NR_mount_setattr
#define __NR_mount_setattr 442
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef NS_GET_NSTYPE
#define NS_GET_NSTYPE _IO(0xb7, 0x3)
#endif

/* struct mount_attr (MOUNT_ATTR_SIZE_VER0), under our own name: glibc 2.36's <sys/mount.h> and <linux/mount.h> clash. */
struct idmap_attr {
	uint64_t attr_set;
	uint64_t attr_clr;
	uint64_t propagation;
	uint64_t userns_fd;
};

enum { EXIT_OK = 0, EXIT_USAGE = 2, EXIT_UNSUPPORTED = 4, EXIT_SYSCALL = 6 };

static const char *const usage_text =
	"usage: oci-userns-idmap mount --userns FILE [--mntns FILE] SOURCE [TARGET]\n"
	"       oci-userns-idmap probe [--userns FILE] [--mntns FILE] PATH\n";

static int fail(int status, const char *what, const char *path, int err)
{
	if (err)
		fprintf(stderr, "oci-userns-idmap: %s: %s: %s\n", what, path, strerror(err));
	else
		fprintf(stderr, "oci-userns-idmap: %s: %s\n", what, path);
	return status;
}

static long long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Opens a namespace file and checks its kind, so a wrong file is a usage error, not a misleading EINVAL later. */
static int open_ns(const char *path, int type, const char *kind, int *fd_out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(EXIT_SYSCALL, "cannot open namespace file", path, errno);
	int actual = ioctl(fd, NS_GET_NSTYPE);
	if (actual < 0)
		return fail(EXIT_USAGE, "not a namespace file", path, errno);
	if (actual != type) {
		fprintf(stderr, "oci-userns-idmap: not a %s namespace: %s\n", kind, path);
		return EXIT_USAGE;
	}
	*fd_out = fd;
	return EXIT_OK;
}

/* The kernel refuses an idmap from the initial user namespace (EPERM); say so plainly. */
static int check_not_own_userns(int fd, const char *path)
{
	struct stat given, own;
	if (fstat(fd, &given) < 0)
		return fail(EXIT_SYSCALL, "cannot stat", path, errno);
	if (stat("/proc/self/ns/user", &own) < 0)
		return fail(EXIT_SYSCALL, "cannot stat", "/proc/self/ns/user", errno);
	if (given.st_dev == own.st_dev && given.st_ino == own.st_ino) {
		fprintf(stderr, "oci-userns-idmap: the user namespace is the helper's own, not a container's: %s\n", path);
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

/*
 * A user namespace that maps container 0 to 65534 for uids and gids, held
 * by an fd after its only process exits: what probe idmaps with when the
 * caller has no namespace of its own to give.
 */
static int throwaway_userns(int *fd_out)
{
	int ready[2], release[2];
	if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(release, O_CLOEXEC) < 0)
		return fail(EXIT_SYSCALL, "cannot make a pipe", "probe", errno);
	pid_t child = fork();
	if (child < 0)
		return fail(EXIT_SYSCALL, "cannot fork", "probe", errno);
	if (child == 0) {
		/* Only the parent's copy of the write end may stay open, or the read below never sees EOF. */
		close(release[1]);
		close(ready[0]);
		char byte = unshare(CLONE_NEWUSER) == 0 ? 'y' : 'n';
		if (write(ready[1], &byte, 1) != 1)
			_exit(1);
		(void)read(release[0], &byte, 1);
		_exit(0);
	}
	close(ready[1]);
	close(release[0]);
	char byte = 0, path[64];
	int status = EXIT_OK;
	if (read(ready[0], &byte, 1) != 1 || byte != 'y') {
		status = fail(EXIT_UNSUPPORTED, "cannot make a user namespace", "probe", 0);
		goto out;
	}
	static const char *const maps[] = { "uid_map", "gid_map" };
	for (int i = 0; i < 2 && status == EXIT_OK; i++) {
		snprintf(path, sizeof(path), "/proc/%d/%s", (int)child, maps[i]);
		int fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, "0 65534 1\n", 10) != 10)
			status = fail(EXIT_SYSCALL, "cannot write the mapping", path, errno);
		if (fd >= 0)
			close(fd);
	}
	snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)child);
	if (status == EXIT_OK && (*fd_out = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		status = fail(EXIT_SYSCALL, "cannot open", path, errno);
out:
	close(release[1]);
	close(ready[0]);
	waitpid(child, NULL, 0);
	return status;
}

/* errno values of mount_setattr(MOUNT_ATTR_IDMAP) that mean "this kernel or filesystem cannot", not "we failed". */
static int refused_by_kernel(int err)
{
	return err == EINVAL || err == EPERM || err == ENOSYS || err == EOPNOTSUPP;
}

struct request {
	int probe;
	const char *userns, *mntns, *source, *target;
};

static int usage(void)
{
	fputs(usage_text, stderr);
	return EXIT_USAGE;
}

static int parse(int argc, char **argv, struct request *req)
{
	if (argc < 2)
		return usage();
	if (strcmp(argv[1], "probe") == 0)
		req->probe = 1;
	else if (strcmp(argv[1], "mount") != 0)
		return usage();
	int positional = 0;
	for (int i = 2; i < argc; i++) {
		const char **option = strcmp(argv[i], "--userns") == 0 ? &req->userns : strcmp(argv[i], "--mntns") == 0 ? &req->mntns : NULL;
		if (option) {
			if (i + 1 >= argc || argv[i + 1][0] == '\0')
				return usage();
			*option = argv[++i];
		} else if (argv[i][0] == '-' || argv[i][0] == '\0') {
			return usage();
		} else if (positional == 0) {
			req->source = argv[i];
			positional++;
		} else if (positional == 1 && !req->probe) {
			req->target = argv[i];
			positional++;
		} else {
			return usage();
		}
	}
	if (!req->source || (!req->probe && !req->userns))
		return usage();
	if (req->source[0] != '/')
		return fail(EXIT_USAGE, "the path must be absolute", req->source, 0);
	if (req->target && req->target[0] != '/')
		return fail(EXIT_USAGE, "the path must be absolute", req->target, 0);
	if (!req->target)
		req->target = req->source;
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	struct request req = { 0 };
	int status = parse(argc, argv, &req);
	if (status != EXIT_OK)
		return status;

	/* Both namespace files are opened before setns: afterwards /proc would be the target namespace's. */
	int userns_fd = -1, mntns_fd = -1;
	if (req.userns) {
		if ((status = open_ns(req.userns, CLONE_NEWUSER, "user", &userns_fd)) != EXIT_OK)
			return status;
		if ((status = check_not_own_userns(userns_fd, req.userns)) != EXIT_OK)
			return status;
	} else if ((status = throwaway_userns(&userns_fd)) != EXIT_OK) {
		return status;
	}
	if (req.mntns && (status = open_ns(req.mntns, CLONE_NEWNS, "mount", &mntns_fd)) != EXIT_OK)
		return status;

	long long t0 = now_us();
	if (mntns_fd >= 0 && setns(mntns_fd, CLONE_NEWNS) < 0)
		return fail(EXIT_SYSCALL, "cannot enter the mount namespace", req.mntns, errno);
	long long t1 = now_us();
	int tree = (int)syscall(__NR_open_tree, AT_FDCWD, req.source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (tree < 0)
		return fail(errno == ENOSYS ? EXIT_UNSUPPORTED : EXIT_SYSCALL, "cannot clone the mount tree (open_tree)", req.source, errno);
	long long t2 = now_us();
	struct idmap_attr attr = { .attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)userns_fd };
	if (syscall(__NR_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
		return fail(refused_by_kernel(errno) ? EXIT_UNSUPPORTED : EXIT_SYSCALL, "the kernel refused an idmapped mount (mount_setattr)", req.source, errno);
	long long t3 = now_us();
	if (req.probe) {
		printf("supported %s\n", req.source);
		return EXIT_OK;
	}
	if (syscall(__NR_move_mount, tree, "", AT_FDCWD, req.target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return fail(errno == ENOSYS ? EXIT_UNSUPPORTED : EXIT_SYSCALL, "cannot put the idmapped mount in place (move_mount)", req.target, errno);
	long long t4 = now_us();
	printf("ok setns_us=%lld open_tree_us=%lld mount_setattr_us=%lld move_mount_us=%lld\n", t1 - t0, t2 - t1, t3 - t2, t4 - t3);
	return EXIT_OK;
}
