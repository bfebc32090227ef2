//! Test support: the synthetic MyBB 1.8.37 forum both database harnesses
//! (`mariadb.rs`, `postgres.rs`) seed — master templates, template groups,
//! themes and their stylesheets, the serialized columns MyBB builds from
//! them, the `default_theme` cache — whatever the database. The forum's
//! directory beside it is `mybb_root.rs`.
//!
//! Both harnesses use it; nothing in it knows which database it seeds.

use std::fmt::Write as _;

/// The password of every forum's account: `@`, `:`, `/` and `%` must be
/// percent-encoded in a URL, and `'` backslash-escaped in `config.php`.
pub const FORUM_PASSWORD: &str = "p@ss:w/rd%1'";

/// Titles every forum's master templates include, whatever their number:
/// the page frame (`header`, `index`, `footer`, `headerinclude`), titles in
/// several template groups, `nav` (content starting with a newline),
/// `htmldoctype` (a real ungrouped title) and `zzcustom_widget` (a prefix
/// no template group has, holding a quote and backslashes).
pub const MASTER_TITLES_ALWAYS: &[&str] = &[
    "header",
    "index",
    "footer",
    "headerinclude",
    "zzcustom_widget",
    "header_welcomeblock_guest",
    "header_welcomeblock_member",
    "index_boardstats",
    "postbit_author_user",
    "nav",
    "htmldoctype",
];

/// The fixed past time every seeded row carries (2023-11-14), so that a
/// test can tell a row the store wrote.
pub const SEED_TIME: u64 = 1_700_000_000;

/// Master templates: [`MASTER_TITLES_ALWAYS`] first, then more real MyBB
/// titles; content small, plausible and already `rtrim`med, as MyBB stores
/// it.
const MASTER_TEMPLATES: &[(&str, &str)] = &[
    (
        "header",
        "<div id=\"container\">\n\t<a name=\"top\" id=\"top\"></a>\n\t<div id=\"header\">\n\t\t<div id=\"logo\">\n\t\t\t<a href=\"{$mybb->settings['bburl']}/index.php\"><img src=\"{$theme['logo']}\" alt=\"{$mybb->settings['bbname']}\" /></a>\n\t\t</div>\n\t\t{$welcomeblock}\n\t</div>\n\t<div id=\"content\">\n\t\t<div class=\"wrapper\">\n\t\t\t{$pm_notice}\n\t\t\t<navigation>",
    ),
    (
        "index",
        "<html>\n<head>\n<title>{$mybb->settings['bbname']}</title>\n{$headerinclude}\n</head>\n<body>\n{$header}\n{$forums}\n{$boardstats}\n{$footer}\n</body>\n</html>",
    ),
    (
        "footer",
        "\t\t</div>\n\t</div>\n\t<div id=\"footer\">\n\t\t<span id=\"copyright\">{$lang->powered_by} <a href=\"https://mybb.com\">MyBB</a> — © 2002-{$copy_year} MyBB Group</span>\n\t</div>\n</div>",
    ),
    (
        "headerinclude",
        "<link rel=\"alternate\" type=\"application/rss+xml\" title=\"{$lang->latest_threads} (RSS 2.0)\" href=\"{$mybb->settings['bburl']}/syndication.php\" />\n<script type=\"text/javascript\" src=\"{$mybb->asset_url}/jscripts/jquery.js?ver=1823\"></script>\n<script type=\"text/javascript\">\n<!--\n\tvar my_post_key = \"{$mybb->post_code}\";\n// -->\n</script>\n{$stylesheets}",
    ),
    (
        "zzcustom_widget",
        "<div class=\"zz_widget\" title='{$lang->welcome_back}'>C:\\forum\\new \\\\ {$mybb->user['username']}</div>",
    ),
    (
        "header_welcomeblock_guest",
        "<span class=\"welcome\">{$lang->welcome_guest} <a href=\"{$mybb->settings['bburl']}/member.php?action=login\">{$lang->welcome_login}</a> &mdash; <a href=\"{$mybb->settings['bburl']}/member.php?action=register\">{$lang->welcome_register}</a></span>",
    ),
    (
        "header_welcomeblock_member",
        "<span class=\"welcome\">{$lang->welcome_back} <a href=\"{$mybb->settings['bburl']}/usercp.php\">{$lang->welcome_usercp}</a></span>",
    ),
    (
        "index_boardstats",
        "<table border=\"0\" cellspacing=\"{$theme['borderwidth']}\" cellpadding=\"{$theme['tablespace']}\" class=\"tborder\">\n<tr>\n<td class=\"thead\"><strong>{$lang->boardstats}</strong></td>\n</tr>\n{$whosonline}\n{$forumstats}\n</table>",
    ),
    (
        "postbit_author_user",
        "{$lang->postbit_posts} {$post['postnum']}<br />\n{$lang->postbit_threads} {$post['threadnum']}<br />\n{$lang->postbit_joined} {$post['userregdate']}",
    ),
    (
        "nav",
        "\n<div class=\"navigation\">\n{$nav}{$activesep}{$activebit}\n</div>",
    ),
    ("htmldoctype", "<!DOCTYPE html>"),
    (
        "index_stats",
        "<tr>\n<td class=\"trow1\"><span class=\"smalltext\">{$lang->stats_posts_threads}<br />{$lang->stats_numusers}</span></td>\n</tr>",
    ),
    (
        "index_whosonline",
        "<tr>\n<td class=\"tcat\"><span class=\"smalltext\"><strong>{$lang->whos_online}</strong> [<a href=\"online.php\">{$lang->complete_list}</a>]</span></td>\n</tr>\n<tr>\n<td class=\"trow1\"><span class=\"smalltext\">{$lang->online_note}<br />{$onlinemembers}</span></td>\n</tr>",
    ),
    (
        "postbit",
        "<a name=\"pid{$post['pid']}\" id=\"pid{$post['pid']}\"></a>\n<div class=\"post {$unapproved_shade}\" id=\"post_{$post['pid']}\">\n<div class=\"post_author\">{$post['useravatar']}{$post['profilelink']}</div>\n<div class=\"post_body\" id=\"pid_{$post['pid']}\">{$post['message']}</div>\n</div>",
    ),
    (
        "postbit_avatar",
        "<div class=\"author_avatar\"><a href=\"{$post['profilelink_plain']}\"><img src=\"{$useravatar['image']}\" alt=\"\" {$useravatar['width_height']} /></a></div>",
    ),
    (
        "postbit_signature",
        "<div class=\"signature scaleimages\">\n{$post['signature']}\n</div>",
    ),
    (
        "forumbit_depth1_cat",
        "<table border=\"0\" cellspacing=\"{$theme['borderwidth']}\" cellpadding=\"{$theme['tablespace']}\" class=\"tborder\">\n<thead>\n<tr>\n<td class=\"thead\" colspan=\"5\"><strong><a href=\"{$forum_url}\">{$forum['name']}</a></strong></td>\n</tr>\n</thead>\n<tbody>\n{$sub_forums}\n</tbody>\n</table>\n<br />",
    ),
    (
        "forumbit_depth2_forum",
        "<tr>\n<td class=\"{$bgcolor}\"><strong><a href=\"{$forum_url}\">{$forum['name']}</a></strong><div class=\"smalltext\">{$forum['description']}</div></td>\n<td class=\"{$bgcolor}\" align=\"center\">{$threads}</td>\n</tr>",
    ),
    (
        "forumdisplay",
        "<html>\n<head>\n<title>{$mybb->settings['bbname']} - {$foruminfo['name']}</title>\n{$headerinclude}\n</head>\n<body>\n{$header}\n{$threadslist}\n{$footer}\n</body>\n</html>",
    ),
    (
        "forumdisplay_thread",
        "<tr class=\"inline_row\">\n\t<td class=\"{$bgcolor}{$thread_type_class}\"><span class=\"{$new_class}\">{$thread['threadprefix']}{$thread['subject']}</span></td>\n</tr>",
    ),
    (
        "showthread",
        "<html>\n<head>\n<title>{$thread['subject']}</title>\n{$headerinclude}\n</head>\n<body>\n{$header}\n<div id=\"posts\">\n{$posts}\n</div>\n{$footer}\n</body>\n</html>",
    ),
    (
        "showthread_newreply",
        "<a href=\"newreply.php?tid={$tid}\" class=\"button new_reply_button\"><span>{$lang->new_reply}</span></a>&nbsp;",
    ),
    (
        "usercp",
        "<html>\n<head>\n<title>{$lang->user_cp}</title>\n{$headerinclude}\n</head>\n<body>\n{$header}\n{$usercpnav}\n{$latest_subscribed}\n{$footer}\n</body>\n</html>",
    ),
    (
        "usercp_nav_messenger_folder",
        "<div><a href=\"private.php?fid={$folder_id}\" class=\"usercp_nav_item {$class}\">{$folder_name}</a></div>",
    ),
    (
        "member_profile",
        "<html>\n<head>\n<title>{$lang->profile}</title>\n{$headerinclude}\n</head>\n<body>\n{$header}\n<fieldset><span class=\"largetext\"><strong>{$formattedname}</strong></span></fieldset>\n{$footer}\n</body>\n</html>",
    ),
    (
        "memberlist_user",
        "<tr>\n<td class=\"{$alt_bg}\">{$user['avatar']}{$user['profilelink']}</td>\n<td class=\"{$alt_bg}\" align=\"center\">{$user['regdate']}</td>\n</tr>",
    ),
    (
        "calendar_select",
        "<option value=\"{$calendar_option['cid']}\"{$selected}>{$calendar_option['name']}</option>",
    ),
    (
        "modcp_nav_modqueue",
        "<tr><td class=\"trow1 smalltext\"><a href=\"modcp.php?action=modqueue\" class=\"modcp_nav_item modcp_nav_modqueue\">{$lang->mcp_nav_modqueue}</a></td></tr>",
    ),
    (
        "private_move",
        "<input type=\"hidden\" value=\"{$from_fid}\" name=\"fromfid\" />\n<select name=\"fid\">\n{$folderoplist_folder}\n</select>",
    ),
    (
        "portal_announcement_icon",
        "<img src=\"{$icon['path']}\" alt=\"{$icon['name']}\" title=\"{$icon['name']}\" />",
    ),
    (
        "search_orderarrow",
        "<span class=\"smalltext\">[<a href=\"{$sorturl}&amp;sortby={$sortby}&amp;order={$oppsortnext}\">{$oppsort}</a>]</span>",
    ),
    (
        "misc_helpresults_noresults",
        "<tr>\n\t<td class=\"trow1\">{$lang->no_help_results}</td>\n</tr>",
    ),
    (
        "error",
        "<html>\n<head>\n<title>{$title}</title>\n{$headerinclude}\n</head>\n<body>\n{$header}\n<div class=\"error\">{$error}</div>\n{$footer}\n</body>\n</html>",
    ),
    (
        "global_pm_alert",
        "<div class=\"pm_alert\" id=\"pm_notice\">\n\t<div>{$privatemessage_text}</div>\n</div>",
    ),
    (
        "multipage_start",
        "<a href=\"{$page_url}\" class=\"pagination_first\">1</a> {$lang->multipage_link_start}",
    ),
    (
        "footer_contactus",
        "<li><a href=\"{$mybb->settings['contactlink']}\">{$lang->bottomlinks_contactus}</a></li>",
    ),
    (
        "forumjump_bit",
        "<option value=\"{$forum['fid']}\" {$optionselected}>{$depth} {$forum['name']}</option>",
    ),
    (
        "video_youtube_embed",
        "<iframe width=\"560\" height=\"315\" src=\"//www.youtube-nocookie.com/embed/{$id}\" frameborder=\"0\" allowfullscreen></iframe>",
    ),
    (
        "redirect",
        "<html>\n<head>\n<title>{$title}</title>\n<meta http-equiv=\"refresh\" content=\"2;URL={$url}\" />\n{$headerinclude}\n</head>\n<body>\n<div class=\"trow1\">{$message}</div>\n</body>\n</html>",
    ),
    (
        "stats_topforum",
        "<a href=\"{$forum['link']}\">{$forum['name']}</a>",
    ),
    (
        "xmlhttp_buddyselect_online",
        "<li class=\"online\"><label><input type=\"checkbox\" class=\"checkbox\" value=\"{$buddy['username']}\" /> {$buddy['avatar']} {$buddy['username']}</label></li>",
    ),
    (
        "mycode_code",
        "<div class=\"codeblock\"><div class=\"title\">{$lang->code}</div><div class=\"body\" dir=\"ltr\"><code>{$code}</code></div></div>",
    ),
    (
        "reputation_vote",
        "<tr>\n\t<td class=\"trow1 {$status_class}\">{$vote['username']} <span class=\"smalltext\">{$vote['comments']}</span></td>\n</tr>",
    ),
    (
        "warnings_warn_pm",
        "<tr>\n\t<td class=\"trow1\" colspan=\"2\"><input type=\"checkbox\" name=\"send_pm\" value=\"1\" /> {$lang->send_pm}</td>\n</tr>",
    ),
];

/// MyBB's template groups, as its installer inserts them
/// (`install/resources/mysql_db_inserts.php`): prefix and the language key
/// of the title, in `gid` order.
const TEMPLATE_GROUPS: &[(&str, &str)] = &[
    ("calendar", "group_calendar"),
    ("editpost", "group_editpost"),
    ("forumbit", "group_forumbit"),
    ("forumjump", "group_forumjump"),
    ("forumdisplay", "group_forumdisplay"),
    ("index", "group_index"),
    ("error", "group_error"),
    ("memberlist", "group_memberlist"),
    ("multipage", "group_multipage"),
    ("private", "group_private"),
    ("portal", "group_portal"),
    ("postbit", "group_postbit"),
    ("posticons", "group_posticons"),
    ("showthread", "group_showthread"),
    ("usercp", "group_usercp"),
    ("online", "group_online"),
    ("moderation", "group_moderation"),
    ("nav", "group_nav"),
    ("search", "group_search"),
    ("showteam", "group_showteam"),
    ("reputation", "group_reputation"),
    ("newthread", "group_newthread"),
    ("newreply", "group_newreply"),
    ("member", "group_member"),
    ("warnings", "group_warning"),
    ("global", "group_global"),
    ("header", "group_header"),
    ("managegroup", "group_managegroup"),
    ("misc", "group_misc"),
    ("modcp", "group_modcp"),
    ("announcement", "group_announcement"),
    ("polls", "group_polls"),
    ("post", "group_post"),
    ("printthread", "group_printthread"),
    ("report", "group_report"),
    ("smilieinsert", "group_smilieinsert"),
    ("stats", "group_stats"),
    ("xmlhttp", "group_xmlhttp"),
    ("footer", "group_footer"),
    ("video", "group_video"),
    ("sendthread", "group_sendthread"),
    ("mycode", "group_mycode"),
];

/// A seeded stylesheet: `(name, owning theme, attachedto, css)`, in `sid`
/// order. Theme 1 (the master style) owns three of MyBB's sheets, which
/// every theme inherits; theme 2 (Default) owns a colour sheet, which
/// theme 3 (Child) inherits.
const STYLESHEETS: &[(&str, u32, &str, &str)] = &[
    (
        "global.css",
        1,
        "",
        "body {\n\tbackground: #fff;\n\tcolor: #333;\n\tfont-family: Tahoma, Verdana, Arial, Sans-Serif;\n\tfont-size: 13px;\n}\n\na:link {\n\tcolor: #0072BC;\n\ttext-decoration: none;\n}\n\n.thead {\n\tbackground: #0066a2 url(images/thead.png) top left repeat-x;\n\tcolor: #ffffff;\n}",
    ),
    (
        "usercp.css",
        1,
        "usercp.php|private.php",
        ".usercp_nav_item {\n\tdisplay: block;\n\tpadding: 1px 0 1px 23px;\n\tbackground-image: url(images/usercp_sprite.png);\n}",
    ),
    (
        "css3.css",
        1,
        "",
        "tr td.trow1:first-child,\ntr td.trow2:first-child {\n\tborder-left: 0;\n}\n\n.tborder {\n\t-moz-border-radius: 7px;\n\tborder-radius: 7px;\n}",
    ),
    (
        "color_black.css",
        2,
        "black",
        "a:link,\na:visited,\na:hover,\na:active {\n\tcolor: #202020;\n}\n\n#logo {\n\tbackground: #202020 url(../../../images/colors/black_header.png) top left repeat-x;\n}",
    ),
];

/// The themes: `(tid, name, pid, def)`.
const THEMES: &[(u32, &str, u32, bool)] = &[
    (1, "MyBB Master Style", 0, false),
    (2, "Default", 1, true),
    (3, "Child", 2, false),
];

/// The rows of a fresh install, small (the master templates
/// `master_titles`, see [`master_titles`]), as SQL statements: `t` names a
/// content table with its prefix, `quote` makes a string literal in the
/// database's dialect. The template set, template groups and themes get
/// explicit ids, those of a fresh install; templates and stylesheets take
/// their tables' counters — a database whose counters do not follow
/// explicit ids (PostgreSQL's sequences) must move them on afterwards.
pub fn seed(
    t: &dyn Fn(&str) -> String,
    quote: &dyn Fn(&str) -> String,
    master_titles: &[String],
) -> String {
    let mut sql = String::new();
    let _ = writeln!(
        sql,
        "INSERT INTO {} (sid, title) VALUES (1, 'Default Templates');",
        t("templatesets")
    );
    for (gid, (prefix, lang)) in TEMPLATE_GROUPS.iter().enumerate() {
        let _ = writeln!(
            sql,
            "INSERT INTO {} (gid, prefix, title, isdefault) VALUES ('{}', '{prefix}', '<lang:{lang}>', '1');",
            t("templategroups"),
            gid + 1
        );
    }
    for title in master_titles {
        let _ = writeln!(
            sql,
            "INSERT INTO {} (title, template, sid, version, status, dateline) VALUES ({}, {}, -2, '1837', '', {SEED_TIME});",
            t("templates"),
            quote(title),
            quote(&master_content(title)),
        );
    }
    for (name, tid, attachedto, css) in STYLESHEETS {
        let _ = writeln!(
            sql,
            "INSERT INTO {} (name, tid, attachedto, stylesheet, cachefile, lastmodified) VALUES ({}, {tid}, {}, {}, {}, {SEED_TIME});",
            t("themestylesheets"),
            quote(name),
            quote(attachedto),
            quote(css),
            quote(name),
        );
    }
    let themes = themes();
    for (tid, name, pid, def) in THEMES {
        let (properties, stylesheets) = &themes[*tid as usize - 1];
        let _ = writeln!(
            sql,
            "INSERT INTO {} (tid, name, pid, def, properties, stylesheets, allowedgroups) VALUES ({tid}, {}, {pid}, {}, {}, {}, 'all');",
            t("themes"),
            quote(name),
            u8::from(*def),
            quote(properties),
            quote(stylesheets),
        );
    }
    // `update_default_theme` (inc/class_datacache.php): the default theme's
    // row as the driver fetched it (every column a string), serialized.
    let (properties, stylesheets) = &themes[1];
    let default_theme = Php::map([
        ("name", Php::str("Default")),
        ("tid", Php::str("2")),
        ("properties", Php::str(properties)),
        ("stylesheets", Php::str(stylesheets)),
    ]);
    let _ = writeln!(
        sql,
        "INSERT INTO {} (title, cache) VALUES ('default_theme', {});",
        t("datacache"),
        quote(&default_theme.serialize())
    );
    sql
}

/// The first `count` master titles: [`MASTER_TITLES_ALWAYS`], the other
/// titles of [`MASTER_TEMPLATES`], then made-up titles spread over the
/// template groups.
pub fn master_titles(count: usize) -> Vec<String> {
    assert!(
        count >= MASTER_TITLES_ALWAYS.len(),
        "a forum has at least {} master templates (MASTER_TITLES_ALWAYS)",
        MASTER_TITLES_ALWAYS.len()
    );
    MASTER_TEMPLATES
        .iter()
        .map(|(title, _)| (*title).to_owned())
        .chain((0..).map(|n| {
            let (prefix, _) = TEMPLATE_GROUPS[n % TEMPLATE_GROUPS.len()];
            format!("{prefix}_extra_{n}")
        }))
        .take(count)
        .collect()
}

/// A master template's content: [`MASTER_TEMPLATES`]'s, or for a made-up
/// title a line naming it.
fn master_content(title: &str) -> String {
    match MASTER_TEMPLATES.iter().find(|(t, _)| *t == title) {
        Some((_, content)) => (*content).to_owned(),
        None => {
            format!("<div class=\"{title}\">{{$lang->{title}}} {{$mybb->user['username']}}</div>")
        }
    }
}

/// Each theme's `properties` and `stylesheets` columns (serialized), by
/// `tid` − 1, as MyBB leaves them:
///
/// - theme 1: `import_theme_xml` of `mybb_theme.xml` (its properties,
///   strings but `templateset`, the master set −2 its templates went to),
///   then `update_theme_stylesheet_list` (`disporder` in sheet order,
///   integers);
/// - theme 2: `build_new_theme("Default", null, 1)` (the parent's
///   properties, each marked `inherited` from 1) and the installer's
///   changes (`templateset` its new set's id, an integer, no longer
///   inherited; `colors`; the colour sheet appended to `disporder`);
/// - theme 3: `build_new_theme("Child", null, 2)` (the parent's properties,
///   `inherited` from where the parent has them);
///
/// and every `stylesheets` column as `update_theme_stylesheet_list` builds
/// it when no cached file exists (the forum root's `cache/themes/` is
/// empty): every URL `css.php?stylesheet={sid}`.
fn themes() -> Vec<(String, String)> {
    let base = [
        // The XML says "1", but the import of its templates as the master
        // set (`templateset` -2) sets it to that set's id.
        ("templateset", Php::Int(-2)),
        ("imgdir", Php::str("images")),
        ("logo", Php::str("images/logo.png")),
        ("tablespace", Php::str("5")),
        ("borderwidth", Php::str("0")),
        ("editortheme", Php::str("mybb.css")),
    ];
    // Each theme's sheets in `sid` order (theme 1's, then the colour sheet
    // the installer appends), numbered from 1.
    let disporder = |tid: u32| {
        let mut sheets = visible_sheets(tid);
        sheets.sort_by_key(|sheet| sheet.3);
        Php::Array(
            sheets
                .iter()
                .enumerate()
                .map(|(i, sheet)| (Php::str(sheet.0), Php::Int(i as i64 + 1)))
                .collect(),
        )
    };
    // Theme 1.
    let mut one = Php::map(base.clone());
    one.set("disporder", disporder(1));
    // Theme 2: the parent's properties, `inherited` inserted after the
    // first one.
    let mut two = Php::map([]);
    for (i, (key, value)) in base.iter().enumerate() {
        two.set(key, value.clone());
        if i == 0 {
            two.set("inherited", Php::map([]));
        }
        if *key != "templateset" {
            two.get_mut("inherited").set(key, Php::Int(1));
        }
    }
    two.set("templateset", Php::Int(1));
    two.get_mut("inherited").set("disporder", Php::Int(1));
    two.set("disporder", disporder(2));
    two.set("colors", Php::map([("black", Php::str("Black"))]));
    // Theme 3.
    let mut three = Php::map([]);
    let Php::Array(parent) = &two else {
        unreachable!()
    };
    for (i, (key, value)) in parent
        .iter()
        .filter(|(k, _)| *k != Php::str("inherited"))
        .enumerate()
    {
        let Php::Str(key) = key else { unreachable!() };
        three.set(key, value.clone());
        if i == 0 {
            three.set("inherited", Php::map([]));
        }
        let from = two
            .get("inherited")
            .and_then(|inherited| inherited.get(key))
            .cloned()
            .unwrap_or(Php::Int(2));
        three.get_mut("inherited").set(key, from);
    }
    three.set("disporder", disporder(3));
    [one, two, three]
        .iter()
        .zip(1..)
        .map(|(properties, tid)| (properties.serialize(), stylesheet_list(tid).serialize()))
        .collect()
}

/// The ids of a theme and its ancestors, the theme first
/// (`make_parent_theme_list`).
fn theme_chain(tid: u32) -> Vec<u32> {
    let mut chain = vec![tid];
    let mut at = tid;
    while let Some((_, _, pid, _)) = THEMES.iter().find(|t| t.0 == at && t.2 != 0) {
        chain.push(*pid);
        at = *pid;
    }
    chain
}

/// The sheets a theme shows, as `update_theme_stylesheet_list` reads them:
/// the chain's rows by `tid` descending (then `sid`), the first of each
/// name winning; with `sid` (1-based).
fn visible_sheets(tid: u32) -> Vec<(&'static str, u32, &'static str, u32)> {
    let chain = theme_chain(tid);
    let mut rows: Vec<_> = STYLESHEETS
        .iter()
        .enumerate()
        .filter(|(_, sheet)| chain.contains(&sheet.1))
        .map(|(i, (name, owner, attachedto, _))| (*name, *owner, *attachedto, i as u32 + 1))
        .collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.1));
    let mut seen = Vec::new();
    rows.retain(|row| {
        let new = !seen.contains(&row.0);
        seen.push(row.0);
        new
    });
    rows
}

/// A theme's `stylesheets` column (`update_theme_stylesheet_list`):
/// `[file][action][] = url`, and for inherited sheets
/// `['inherited']["{file}_{action}"][url] = owner tid` (a string, as the
/// driver fetched it).
fn stylesheet_list(tid: u32) -> Php {
    let mut list = Php::map([]);
    for (_, owner, attachedto, sid) in visible_sheets(tid) {
        let url = format!("css.php?stylesheet={sid}");
        let attachedto = if attachedto.is_empty() {
            "global"
        } else {
            attachedto
        };
        for attached in attachedto.split('|') {
            let (file, actions) = match attached.split_once('?') {
                Some((file, actions)) => (file, actions.split(',').collect::<Vec<_>>()),
                None => (attached, vec!["global"]),
            };
            for action in actions {
                list.get_or_insert(file)
                    .get_or_insert(action)
                    .push(Php::str(&url));
                if owner != tid {
                    list.get_or_insert("inherited")
                        .get_or_insert(&format!("{file}_{action}"))
                        .set(&url, Php::Str(owner.to_string()));
                }
            }
        }
    }
    list
}

/// A PHP value, for building what MyBB stores serialized
/// (`my_serialize`, which writes what PHP's `serialize` does for these).
#[derive(Clone, Debug, PartialEq)]
enum Php {
    Int(i64),
    Str(String),
    /// An ordered array, as PHP's.
    Array(Vec<(Php, Php)>),
}

impl Php {
    fn str(s: &str) -> Php {
        Php::Str(s.to_owned())
    }

    fn map<const N: usize>(entries: [(&str, Php); N]) -> Php {
        Php::Array(entries.into_iter().map(|(k, v)| (Php::str(k), v)).collect())
    }

    fn entries(&mut self) -> &mut Vec<(Php, Php)> {
        match self {
            Php::Array(entries) => entries,
            other => panic!("not an array: {other:?}"),
        }
    }

    fn get(&self, key: &str) -> Option<&Php> {
        match self {
            Php::Array(entries) => entries
                .iter()
                .find(|(k, _)| *k == Php::str(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    fn get_mut(&mut self, key: &str) -> &mut Php {
        self.entries()
            .iter_mut()
            .find(|(k, _)| *k == Php::str(key))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no key {key:?}"))
    }

    /// `$a[key]`, created as an empty array if missing.
    fn get_or_insert(&mut self, key: &str) -> &mut Php {
        if self.get(key).is_none() {
            self.entries().push((Php::str(key), Php::map([])));
        }
        self.get_mut(key)
    }

    /// `$a[key] = value`: in place if the key exists, else at the end.
    fn set(&mut self, key: &str, value: Php) {
        match self.entries().iter_mut().find(|(k, _)| *k == Php::str(key)) {
            Some((_, v)) => *v = value,
            None => self.entries().push((Php::str(key), value)),
        }
    }

    /// `$a[] = value`.
    fn push(&mut self, value: Php) {
        let next = self
            .entries()
            .iter()
            .filter_map(|(k, _)| match k {
                Php::Int(i) => Some(i + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        self.entries().push((Php::Int(next), value));
    }

    fn serialize(&self) -> String {
        match self {
            Php::Int(i) => format!("i:{i};"),
            Php::Str(s) => format!("s:{}:\"{s}\";", s.len()),
            Php::Array(entries) => {
                let mut out = format!("a:{}:{{", entries.len());
                for (k, v) in entries {
                    out.push_str(&k.serialize());
                    out.push_str(&v.serialize());
                }
                out.push('}');
                out
            }
        }
    }
}
