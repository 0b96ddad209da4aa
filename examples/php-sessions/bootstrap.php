<?php
/* Opens the session segment and installs the shmkv session handler; a page
   includes it before session_start(). Shmkv and ShmkvSessionHandler are
   already declared (preload.php). The handle is opened for each request
   and closed at its end, after the session is written.

   Environment (run.sh sets it): SHMKV_SESSION_SEGMENT, the segment;
   SHMKV_SESSION_LOCKING, 0 to turn locking off (default on); and
   SHMKV_SESSION_LOCK_EXPIRE (s), SHMKV_SESSION_LOCK_WAIT_TIME (us),
   SHMKV_SESSION_LOCK_RETRIES, unset for the handler's defaults. */

declare(strict_types=1);

$kv = Shmkv::open((string)getenv('SHMKV_SESSION_SEGMENT'));
$options = ['locking_enabled' => getenv('SHMKV_SESSION_LOCKING') !== '0'];
foreach (['lock_expire', 'lock_wait_time', 'lock_retries'] as $name) {
    $value = getenv('SHMKV_SESSION_' . strtoupper($name));
    if ($value !== false && $value !== '') {
        $options[$name] = (int)$value;
    }
}
session_set_save_handler(new ShmkvSessionHandler($kv, $options), true);
header('X-Worker-Pid: ' . getmypid());
// Which Shmkv served: the native extension's class, or the FFI wrapper's.
header('X-Shmkv-Binding: ' . ((new ReflectionClass('Shmkv'))->isInternal() ? 'extension' : 'ffi'));
