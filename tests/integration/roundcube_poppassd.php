<?php
/*
 * Run Roundcube's real poppassd password driver outside Roundcube.
 *
 * usage: php roundcube_poppassd.php HOST PORT USERNAME CURPASS NEWPASS
 * prints the driver's return value as JSON: 0 (PASSWORD_SUCCESS) or
 * {"code": N, "message": "..."}, and exits 0.
 *
 * The driver (/usr/share/roundcube/plugins/password/drivers/poppassd.php,
 * Debian roundcube-plugins) needs a few Roundcube classes; the minimal stubs
 * below provide exactly what it calls: rcmail::get_instance()->config->get()
 * and rcube_utils::parse_host().  Net_Socket is the real one (php-net-socket).
 * The PASSWORD_* values are copied from plugins/password/password.php.
 */
set_include_path('/usr/share/php' . PATH_SEPARATOR . get_include_path());
require_once 'Net/Socket.php';

define('PASSWORD_CRYPT_ERROR', 1);
define('PASSWORD_ERROR', 2);
define('PASSWORD_CONNECT_ERROR', 3);
define('PASSWORD_IN_HISTORY', 4);
define('PASSWORD_CONSTRAINT_VIOLATION', 5);
define('PASSWORD_COMPARE_CURRENT', 6);
define('PASSWORD_COMPARE_NEW', 7);
define('PASSWORD_SUCCESS', 0);

class stub_config
{
    public $values = [];
    function get($name, $default = null)
    {
        return array_key_exists($name, $this->values) ? $this->values[$name] : $default;
    }
}

class rcmail
{
    static $instance;
    public $config;
    static function get_instance()
    {
        if (!self::$instance) {
            self::$instance = new rcmail();
            self::$instance->config = new stub_config();
        }
        return self::$instance;
    }
}

class rcube
{
    static function raise_error($error, $log = false, $terminate = false)
    {
        fwrite(STDERR, "rcube::raise_error: " . json_encode($error) . "\n");
    }
}

class rcube_utils
{
    static function parse_host($name, $host = '')
    {
        return $name;  // the real one substitutes %h/%n/%d...; none are used here
    }
}

require_once '/usr/share/roundcube/plugins/password/drivers/poppassd.php';

if ($argc != 6) {
    fwrite(STDERR, "usage: php roundcube_poppassd.php HOST PORT USERNAME CURPASS NEWPASS\n");
    exit(2);
}
$rc = rcmail::get_instance();
$rc->config->values['password_pop_host'] = $argv[1];
$rc->config->values['password_pop_port'] = (int)$argv[2];
$driver = new rcube_poppassd_password();
echo json_encode($driver->save($argv[4], $argv[5], $argv[3])), "\n";
