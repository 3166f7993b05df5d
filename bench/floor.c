/*
 * The kernel floor of a full-fidelity shift, for `npm run bench:shift`.
 *
 * Not part of oci-userns: a measuring instrument. It does, per inode, only
 * the system calls no correct shift can skip (an lstat to learn the owner,
 * an llistxattr to find ACLs and file capabilities before chown destroys
 * the capabilities, and the lchown), on N threads sharing a directory
 * queue, and nothing else: no journal, no ACL or capability rewrite, no
 * error handling beyond stopping. What it measures bounds from below what
 * any implementation, in any language, can do on this machine.
 *
 * Usage: floor ROOT THREADS OFFSET   (adds OFFSET to every uid and gid)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

static char **queue;
static size_t queued, capacity;
static int busy;
static unsigned offset;
static dev_t device;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;

static void die(const char *what, const char *path) {
  perror(path);
  fprintf(stderr, "floor: %s failed\n", what);
  exit(1);
}

static void push(char *dir) {
  if (queued == capacity) {
    capacity = capacity ? capacity * 2 : 1024;
    queue = realloc(queue, capacity * sizeof *queue);
    if (!queue) die("realloc", "queue");
  }
  queue[queued++] = dir;
}

static void walk_dir(char *dir) {
  char path[PATH_MAX];
  char names[4096];
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (fd < 0) die("open", dir);
  DIR *d = fdopendir(fd);
  if (!d) die("fdopendir", dir);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    struct stat st;
    if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW)) die("fstatat", e->d_name);
    if (st.st_dev != device) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (!S_ISLNK(st.st_mode) && llistxattr(path, names, sizeof names) < 0) die("llistxattr", path);
    if (fchownat(fd, e->d_name, st.st_uid + offset, st.st_gid + offset, AT_SYMLINK_NOFOLLOW)) die("fchownat", path);
    if (S_ISDIR(st.st_mode)) {
      char *sub = strdup(path);
      pthread_mutex_lock(&lock);
      push(sub);
      pthread_cond_signal(&wake);
      pthread_mutex_unlock(&lock);
    }
  }
  closedir(d);
}

static void *worker(void *unused) {
  (void)unused;
  for (;;) {
    pthread_mutex_lock(&lock);
    while (queued == 0 && busy > 0) pthread_cond_wait(&wake, &lock);
    if (queued == 0) {
      pthread_mutex_unlock(&lock);
      return NULL;
    }
    char *dir = queue[--queued];
    busy++;
    pthread_mutex_unlock(&lock);
    walk_dir(dir);
    free(dir);
    pthread_mutex_lock(&lock);
    if (--busy == 0 && queued == 0) pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
  }
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: floor ROOT THREADS OFFSET\n");
    return 2;
  }
  int threads = atoi(argv[2]);
  offset = (unsigned)strtoul(argv[3], NULL, 10);
  struct stat st;
  if (lstat(argv[1], &st)) die("lstat", argv[1]);
  device = st.st_dev;
  push(strdup(argv[1]));
  pthread_t ids[64];
  if (threads < 1 || threads > 64) threads = 1;
  for (int i = 0; i < threads; i++) pthread_create(&ids[i], NULL, worker, NULL);
  for (int i = 0; i < threads; i++) pthread_join(ids[i], NULL);
  if (lchown(argv[1], st.st_uid + offset, st.st_gid + offset)) die("lchown", argv[1]);
  return 0;
}
