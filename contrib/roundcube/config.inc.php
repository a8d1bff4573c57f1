<?php
// Roundcube password plugin -> courierpassd (its "poppassd" driver; the driver's own
// header says "Driver to change passwords via Poppassd/Courierpassd").
// Merge into /etc/roundcube/plugins/password/config.inc.php and add 'password' to
// $config['plugins'] in /etc/roundcube/config.inc.php.
//
// On the mail server itself, point at courierpassd on 127.0.0.1:106.  On a separate
// webmail host, run contrib/stunnel/webmail-client.conf there: its local end is
// 127.0.0.1:106 too, so these settings do not change.

$config['password_driver'] = 'poppassd';
$config['password_pop_host'] = '127.0.0.1';
$config['password_pop_port'] = 106;

// The old password is what courierpassd checks first: keep asking for it.
$config['password_confirm_current'] = true;
// Same floor as courierpassd's min_password_length (authkit.conf); courierpassd
// refuses shorter ones anyway, but Roundcube then says why before connecting.
$config['password_minimum_length'] = 8;
// The login as the user typed it (user@domain for virtual accounts).  Use '%l'
// only if the userdb keys are bare local parts.
$config['password_username_format'] = '%u';
