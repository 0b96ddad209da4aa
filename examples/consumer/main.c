/* A program outside the shmkv tree that uses the installed C API: opens (or
   creates) the segment named on the command line, stores a key, reads it
   back and prints it. Built by CMakeLists.txt (find_package) and by
   Makefile (pkg-config); see scripts/package.sh.

     consumer_c SEGMENT */
#include <shmkv/shmkv.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s SEGMENT\n", argv[0]);
    return 2;
  }
  /* The header and the library that was loaded must be the same version. */
  if (strstr(shmkv_version(), SHMKV_VERSION_STRING) == NULL) {
    fprintf(stderr, "header %s, library %s\n", SHMKV_VERSION_STRING, shmkv_version());
    return 1;
  }

  shmkv_options_t opts;
  shmkv_options_init(&opts);
  opts.memory_bytes = 4u << 20;
  opts.flags = SHMKV_OPEN_CREATE;
  shmkv_t *kv = NULL;
  int rc = shmkv_open(argv[1], &opts, &kv);
  if (rc != 0) {
    fprintf(stderr, "open %s: %s\n", argv[1], shmkv_strerror(rc));
    return 1;
  }

  static const char kKey[] = "consumer:c";
  static const char kValue[] = "hello from C";
  char buf[64];
  size_t len = 0;
  rc = shmkv_set(kv, kKey, strlen(kKey), kValue, strlen(kValue), 0);
  if (rc == 0) rc = shmkv_get(kv, kKey, strlen(kKey), buf, sizeof(buf), &len, NULL);
  shmkv_close(kv);
  if (rc != 0) {
    fprintf(stderr, "set/get: %s\n", shmkv_strerror(rc));
    return 1;
  }
  if (len != strlen(kValue) || memcmp(buf, kValue, len) != 0) {
    fprintf(stderr, "got %.*s, want %s\n", (int)len, buf, kValue);
    return 1;
  }
  printf("C: shmkv %s: %s = %.*s\n", shmkv_version(), kKey, (int)len, buf);
  return 0;
}
