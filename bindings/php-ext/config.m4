dnl The shmkv PHP extension, built the PECL way:
dnl   phpize && ./configure --with-shmkv[=PREFIX] && make && make install
dnl PREFIX is where libshmkv is installed (include/shmkv/shmkv.h and
dnl lib/libshmkv.so); without it /usr/local and /usr are searched.
PHP_ARG_WITH([shmkv],
  [for shmkv support],
  [AS_HELP_STRING([--with-shmkv[=DIR]], [shmkv support (DIR: libshmkv install prefix)])])

if test "$PHP_SHMKV" != "no"; then
  AC_MSG_CHECKING([for shmkv/shmkv.h])
  SHMKV_DIR=
  if test "$PHP_SHMKV" != "yes"; then
    dnl A prefix was given: that one, or an error (never another copy).
    if test -r "$PHP_SHMKV/include/shmkv/shmkv.h"; then
      SHMKV_DIR=$PHP_SHMKV
    else
      AC_MSG_RESULT([not found])
      AC_MSG_ERROR([$PHP_SHMKV/include/shmkv/shmkv.h not found (--with-shmkv=PREFIX: where libshmkv is installed)])
    fi
  else
    for i in /usr/local /usr; do
      if test -r "$i/include/shmkv/shmkv.h"; then
        SHMKV_DIR=$i
        break
      fi
    done
  fi
  if test -z "$SHMKV_DIR"; then
    AC_MSG_RESULT([not found])
    AC_MSG_ERROR([shmkv/shmkv.h not found: install libshmkv-dev or pass --with-shmkv=PREFIX])
  fi
  AC_MSG_RESULT([in $SHMKV_DIR])
  PHP_ADD_INCLUDE($SHMKV_DIR/include)
  PHP_CHECK_LIBRARY(shmkv, shmkv_open,
    [PHP_ADD_LIBRARY_WITH_PATH(shmkv, $SHMKV_DIR/$PHP_LIBDIR, SHMKV_SHARED_LIBADD)],
    [AC_MSG_ERROR([libshmkv not found in $SHMKV_DIR/$PHP_LIBDIR])],
    [-L$SHMKV_DIR/$PHP_LIBDIR])
  PHP_SUBST(SHMKV_SHARED_LIBADD)
  PHP_NEW_EXTENSION(shmkv, shmkv.c, $ext_shared)
fi
