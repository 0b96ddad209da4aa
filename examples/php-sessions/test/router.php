<?php
/* Router of the test's server (test.sh passes it to run.sh): /race is the
   test's page, every other request goes to the example as it is.

   /race?tag=T&wait_ms=W: one "read the counter, write counter+1" step of
   the session, with a rendezvous of two requests in between, so that the
   interleaving is decided by the handler's locking, not by timing. Each
   request counts itself in race:T:started before session_start(), reads
   $_SESSION['counter'], counts itself in race:T:arrived, and then waits
   (polling, bounded) until both requests have arrived; it gives up when W
   ms have passed and the other request has at least started, or after 10 s
   in any case. Without locking both arrive, both read the same value and
   one update is lost. With locking the second request is held in
   session_start() until the first one has written and released the
   session, so the first one gives up waiting and the second one reads its
   value. The answer is JSON: pid, the value read, whether the other
   request arrived, how many had started when the wait ended. */

declare(strict_types=1);

if (parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) !== '/race') {
    return false;
}

require __DIR__ . '/../bootstrap.php';

$tag = 'race:' . ($_GET['tag'] ?? '');
$waitNs = (int)($_GET['wait_ms'] ?? 1000) * 1_000_000;
$kv->incr("$tag:started", 1, 1, 60_000);
if (!session_start()) {
    http_response_code(503);
    echo json_encode(['pid' => getmypid(), 'error' => 'session_start failed']), "\n";
    return true;
}
$read = (int)($_SESSION['counter'] ?? 0);
$kv->incr("$tag:arrived", 1, 1, 60_000);

$start = hrtime(true);
for (;;) {
    $arrived = (int)$kv->get("$tag:arrived");
    $started = (int)$kv->get("$tag:started");
    $elapsed = hrtime(true) - $start;
    if ($arrived >= 2 || ($elapsed >= $waitNs && $started >= 2) || $elapsed >= 10_000_000_000) {
        break;
    }
    usleep(1000);
}
$_SESSION['counter'] = $read + 1;
session_write_close();

header('Content-Type: application/json');
echo json_encode(['pid' => getmypid(), 'read' => $read, 'met' => $arrived >= 2,
                  'started' => $started]), "\n";
return true;
