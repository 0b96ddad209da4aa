/* Symbol visibility for libshmkv. The library is built with hidden
   visibility; only what is marked SHMKV_EXPORT is part of the ABI. */
#ifndef SHMKV_EXPORT_H_
#define SHMKV_EXPORT_H_

#if defined(SHMKV_STATIC_DEFINE)
#define SHMKV_EXPORT
#elif defined(__GNUC__)
#define SHMKV_EXPORT __attribute__((visibility("default")))
#else
#define SHMKV_EXPORT
#endif

#endif /* SHMKV_EXPORT_H_ */
