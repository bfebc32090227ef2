//! Test support: the directory of a synthetic MyBB 1.8.37 forum, as far as
//! outpost reads it — `inc/config.php` in the installer's format naming the
//! harness's database, `inc/class_core.php` with the version, and an empty
//! `cache/themes/` — whatever the database (`mybb_data.rs` seeds that).

use std::{fs, path::Path};

/// The database settings of an `inc/config.php`.
pub struct ConfigDb<'a> {
    /// `$config['database']['type']`: `mysqli`, `pgsql`, …
    pub kind: &'a str,
    pub database: &'a str,
    pub table_prefix: &'a str,
    /// Written as given (`localhost`, `127.0.0.1:<port>`, …).
    pub hostname: &'a str,
    pub username: &'a str,
    pub password: &'a str,
    /// `$config['database']['encoding']`, or None for a driver whose
    /// `fetch_db_charsets` returns false (pgsql, SQLite): the installer
    /// offers no encoding then and writes the line commented out, with the
    /// value it never got (`// $config['database']['encoding'] = '';`).
    pub encoding: Option<&'a str>,
}

/// Writes a forum's root directory the way MyBB's installer leaves one, as
/// far as the store reads it: `inc/config.php` in the installer's format
/// (`install/index.php`, `$configdata`, then the admin step's
/// `secret_pin`) with `db`'s settings; `inc/class_core.php` with MyBB
/// 1.8.37's version; and an empty `cache/themes/` for the stylesheet files.
pub fn write_root(dir: &Path, db: &ConfigDb<'_>) {
    fs::create_dir_all(dir.join("inc")).expect("cannot create inc/");
    fs::create_dir_all(dir.join("cache/themes")).expect("cannot create cache/themes/");
    fs::write(dir.join("inc/config.php"), config_php(db)).expect("cannot write inc/config.php");
    fs::write(dir.join("inc/class_core.php"), CLASS_CORE_PHP)
        .expect("cannot write inc/class_core.php");
}

fn config_php(db: &ConfigDb<'_>) -> String {
    let encoding = match db.encoding {
        Some(encoding) => format!("$config['database']['encoding'] = {};", php_quote(encoding)),
        None => "// $config['database']['encoding'] = '';".to_owned(),
    };
    format!(
        "{CONFIG_HEAD}\
         $config['database']['type'] = {kind};\n\
         $config['database']['database'] = {database};\n\
         $config['database']['table_prefix'] = {prefix};\n\
         \n\
         $config['database']['hostname'] = {hostname};\n\
         $config['database']['username'] = {username};\n\
         $config['database']['password'] = {password};\n\
         {CONFIG_MIDDLE}\
         {encoding}\n\
         {CONFIG_TAIL}",
        kind = php_quote(db.kind),
        database = php_quote(db.database),
        prefix = php_quote(db.table_prefix),
        hostname = php_quote(db.hostname),
        username = php_quote(db.username),
        password = php_quote(db.password),
    )
}

/// `inc/config.php` up to the database settings, as MyBB's installer
/// writes it.
const CONFIG_HEAD: &str = "<?php
/**
 * Database configuration
 *
 * Please see the MyBB Docs for advanced
 * database configuration for larger installations
 * https://docs.mybb.com/
 */

";

/// `inc/config.php` between the database settings and the encoding.
const CONFIG_MIDDLE: &str = "
/**
 * Admin CP directory
 *  For security reasons, it is recommended you
 *  rename your Admin CP directory. You then need
 *  to adjust the value below to point to the
 *  new directory.
 */

$config['admin_dir'] = 'admin';

/**
 * Hide all Admin CP links
 *  If you wish to hide all Admin CP links
 *  on the front end of the board after
 *  renaming your Admin CP directory, set this
 *  to 1.
 */

$config['hide_admin_links'] = 0;

/**
 * Data-cache configuration
 *  The data cache is a temporary cache
 *  of the most commonly accessed data in MyBB.
 *  By default, the database is used to store this data.
 *
 *  If you wish to use the file system (cache/ directory), MemCache (or MemCached), xcache, APC, APCu, eAccelerator or Redis
 *  you can change the value below to 'files', 'memcache', 'memcached', 'xcache', 'apc', 'apcu', 'eaccelerator' or 'redis' from 'db'.
 */

$config['cache_store'] = 'db';

/**
 * Memcache configuration
 *  If you are using memcache or memcached as your
 *  data-cache, you need to configure the hostname
 *  and port of your memcache server below.
 *
 * If not using memcache, ignore this section.
 */

$config['memcache']['host'] = 'localhost';
$config['memcache']['port'] = 11211;

/**
 * Redis configuration
 *  If you are using Redis as your data-cache
 *  you need to configure the hostname and port
 *  of your redis server below. If you want
 *  to connect via unix sockets, use the full
 *  path to the unix socket as host and leave
 *  the port setting unconfigured or false.
 */

$config['redis']['host'] = 'localhost';
$config['redis']['port'] = 6379;

/**
 * Super Administrators
 *  A comma separated list of user IDs who cannot
 *  be edited, deleted or banned in the Admin CP.
 *  The administrator permissions for these users
 *  cannot be altered either.
 */

$config['super_admins'] = '1';

/**
 * Database Encoding
 *  If you wish to set an encoding for MyBB uncomment
 *  the line below (if it isn't already) and change
 *  the current value to the mysql charset:
 *  http://dev.mysql.com/doc/refman/5.1/en/charset-mysql.html
 */

";

/// `inc/config.php` after the encoding: the installer's log pruning and
/// remote hosts, two blank lines, and the admin step's appended secret PIN
/// (empty), without a final newline.
const CONFIG_TAIL: &str = "
/**
 * Automatic Log Pruning
 *  The MyBB task system can automatically prune
 *  various log files created by MyBB.
 *  To enable this functionality for the logs below, set the
 *  the number of days before each log should be pruned.
 *  If you set the value to 0, the logs will not be pruned.
 */

$config['log_pruning'] = array(
	'admin_logs' => 365, // Administrator logs
	'mod_logs' => 365, // Moderator logs
	'task_logs' => 30, // Scheduled task logs
	'mail_logs' => 180, // Mail error logs
	'user_mail_logs' => 180, // User mail logs
	'promotion_logs' => 180 // Promotion logs
);

/**
 * Disallowed Remote Hosts
 *  List of hosts the fetch_remote_file() function will not
 *  perform requests to.
 *  It is recommended that you enter hosts resolving to the
 *  forum server here to prevent Server Side Request
 *  Forgery attacks.
 */

$config['disallowed_remote_hosts'] = array(
	'localhost',
);

/**
 * Disallowed Remote Addresses
 *  List of IPv4 addresses the fetch_remote_file() function
 *  will not perform requests to.
 *  It is recommended that you enter addresses resolving to
 *  the forum server here to prevent Server Side Request
 *  Forgery attacks.
 *  Removing all values disables resolving hosts in that
 *  function.
 */

$config['disallowed_remote_addresses'] = array(
	'127.0.0.1',
	'10.0.0.0/8',
	'172.16.0.0/12',
	'192.168.0.0/16',
);

/**
 * Admin CP Secret PIN
 *  If you wish to request a PIN
 *  when someone tries to login
 *  on your Admin CP, enter it below.
 */

$config['secret_pin'] = '';";

/// The start of MyBB 1.8.37's `inc/class_core.php`, where its version is.
const CLASS_CORE_PHP: &str = "<?php
/**
 * MyBB 1.8
 * Copyright 2014 MyBB Group, All Rights Reserved
 *
 * Website: http://www.mybb.com
 * License: http://www.mybb.com/about/license
 *
 */

class MyBB {
	/**
	 * The friendly version number of MyBB we're running.
	 *
	 * @var string
	 */
	public $version = \"1.8.37\";

	/**
	 * The version code of MyBB we're running.
	 *
	 * @var integer
	 */
	public $version_code = 1837;
}
";

/// A PHP single-quoted string holding `s` exactly: `'` and `\` escaped
/// with a backslash. (MyBB's installer escapes only `'`, which reads back
/// the same unless a value holds `\\` or ends with `\`.)
pub fn php_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}
