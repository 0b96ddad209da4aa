<?php
/* The example's pages: sign in, a cart, sign out. Every page shows the pid
   of the worker that served it (also in the X-Worker-Pid header): the
   session is the same whichever worker that is, because it lives in the
   shmkv segment, not in the worker.

     GET  /               the session: who is signed in, the cart
     POST /login          user=NAME: signs in (a new session id)
     POST /cart           item=NAME: adds an item to the cart
     POST /logout         ends the session (its entry leaves the segment)

   The cli-server sends every path that is not a file here. */

declare(strict_types=1);

require __DIR__ . '/bootstrap.php';

if (!session_start()) {
    // The session's lock stayed taken for the whole wait (locking on).
    http_response_code(503);
    header('Retry-After: 1');
    header('Content-Type: text/plain');
    echo "Session busy: try again\n";
    return;
}

$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
$post = $_SERVER['REQUEST_METHOD'] === 'POST';
$note = '';
if ($post && $path === '/login') {
    $user = trim((string)($_POST['user'] ?? ''));
    if ($user === '') {
        http_response_code(400);
        $note = 'A name is needed to sign in.';
    } else {
        session_regenerate_id(true);  // a new id on sign-in (session fixation)
        $_SESSION['user'] = $user;
        $note = 'Signed in.';
    }
} elseif ($post && $path === '/cart') {
    $item = trim((string)($_POST['item'] ?? ''));
    if ($item !== '') {
        $_SESSION['cart'][] = $item;
        $note = "Added $item.";
    }
} elseif ($post && $path === '/logout') {
    $_SESSION = [];
    $p = session_get_cookie_params();
    setcookie(session_name(), '', ['expires' => 1, 'path' => $p['path'],
                                   'httponly' => true, 'samesite' => 'Lax']);
    session_destroy();
    $note = 'Signed out.';
} elseif ($path !== '/') {
    http_response_code(404);
    $note = 'No such page.';
}

$user = $_SESSION['user'] ?? null;
$cart = $_SESSION['cart'] ?? [];
session_write_close();  // the lock, if any, is released before the output

$h = static fn(string $s): string => htmlspecialchars($s, ENT_QUOTES);
?>
<!doctype html>
<title>shmkv PHP sessions</title>
<h1>PHP sessions in shmkv</h1>
<p>Served by worker pid <b id="pid"><?= getmypid() ?></b>.</p>
<?php if ($note !== ''): ?>
<p id="note"><?= $h($note) ?></p>
<?php endif ?>
<?php if ($user === null): ?>
<p id="user">Not signed in.</p>
<form method="post" action="/login">
  <input name="user" placeholder="name" required> <button>Sign in</button>
</form>
<?php else: ?>
<p id="user">Signed in as <b><?= $h($user) ?></b>.</p>
<form method="post" action="/logout"><button>Sign out</button></form>
<?php endif ?>
<p id="cart">Cart: <?= count($cart) ?> item<?= count($cart) === 1 ? '' : 's' ?><?=
    $cart === [] ? '' : ': ' . $h(implode(', ', $cart)) ?>.</p>
<form method="post" action="/cart">
  <input name="item" placeholder="item" required> <button>Add to cart</button>
</form>
<p><a href="/">Reload</a> a few times: the pid changes, the session does not.</p>
