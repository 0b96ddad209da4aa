<?php
/* opcache.preload script of the example (php.ini). Under the default
   ffi.enable=preload, only code compiled at startup may use FFI: the
   binding and the session handler are loaded here, in the server process,
   before it forks its workers, and every request finds both classes
   already declared. The binding takes the library's declarations from the
   scope that ffi.preload declared (Shmkv::SCOPE). */

declare(strict_types=1);

require __DIR__ . '/../../bindings/php/Shmkv.php';
require __DIR__ . '/../../bindings/php/ShmkvSessionHandler.php';
