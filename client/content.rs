//! Content commands: `template` and `stylesheet` (ls, get, put, rm).

use std::{
    io::{Read, Write},
    path::PathBuf,
    process::ExitCode,
};

use clap::Subcommand;
use outpost::{endpoint::Connection, proto::v1 as pb};

use crate::{
    failure::Failure,
    output::{self, done},
};

/// `outpostctl template|stylesheet …`. For templates COLLECTION is a
/// template set and NAME a title; for stylesheets a theme and a name.
#[derive(Debug, Subcommand)]
pub enum ContentCommand {
    /// List the collections, or the items of one
    Ls {
        /// Template set or theme
        collection: Option<String>,
    },
    /// Print an item's content
    Get {
        /// Template set or theme
        collection: String,
        /// Title or stylesheet name
        name: String,
    },
    /// Create or replace an item with the content of a file, or of stdin
    Put {
        /// Template set or theme
        collection: String,
        /// Title or stylesheet name
        name: String,
        /// Read the content from this file instead of stdin
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Only write if the item is at this version (0: only if new)
        #[arg(long, value_name = "VERSION")]
        expect_version: Option<u64>,
    },
    /// Delete an item
    Rm {
        /// Template set or theme
        collection: String,
        /// Title or stylesheet name
        name: String,
        /// Only delete if the item is at this version
        #[arg(long, value_name = "VERSION")]
        expect_version: Option<u64>,
    },
}

/// Which content a command is about.
#[derive(Clone, Copy, Debug)]
pub enum Content {
    /// Templates in template sets.
    Templates,
    /// Stylesheets in themes.
    Stylesheets,
}

/// One item, whichever kind.
struct Row {
    name: String,
    version: u64,
    size: u64,
}

pub async fn run(
    connection: &Connection,
    json: bool,
    content: Content,
    command: ContentCommand,
) -> Result<ExitCode, Failure> {
    let mut client = connection.sync();
    match (content, command) {
        (Content::Templates, ContentCommand::Ls { collection: None }) => {
            let response = client
                .list_template_sets(pb::ListTemplateSetsRequest {})
                .await?
                .into_inner();
            if json {
                return done(output::json(&response));
            }
            let rows = response
                .sets
                .into_iter()
                .map(|s| (s.name, s.template_count))
                .collect();
            print_collections(rows)
        }
        (Content::Stylesheets, ContentCommand::Ls { collection: None }) => {
            let response = client
                .list_themes(pb::ListThemesRequest {})
                .await?
                .into_inner();
            if json {
                return done(output::json(&response));
            }
            let rows = response
                .themes
                .into_iter()
                .map(|t| (t.name, t.stylesheet_count))
                .collect();
            print_collections(rows)
        }
        (
            Content::Templates,
            ContentCommand::Ls {
                collection: Some(set),
            },
        ) => {
            let request = pb::ListTemplatesRequest {
                set,
                include_content: false,
            };
            let response = client.list_templates(request).await?.into_inner();
            if json {
                return done(output::json(&response));
            }
            let rows = response.templates.into_iter().map(|t| Row {
                name: t.key.unwrap_or_default().title,
                version: t.version,
                size: t.size_bytes,
            });
            print_items(rows.collect())
        }
        (
            Content::Stylesheets,
            ContentCommand::Ls {
                collection: Some(theme),
            },
        ) => {
            let request = pb::ListStylesheetsRequest {
                theme,
                include_content: false,
            };
            let response = client.list_stylesheets(request).await?.into_inner();
            if json {
                return done(output::json(&response));
            }
            let rows = response.stylesheets.into_iter().map(|s| Row {
                name: s.key.unwrap_or_default().name,
                version: s.version,
                size: s.size_bytes,
            });
            print_items(rows.collect())
        }
        (Content::Templates, ContentCommand::Get { collection, name }) => {
            let key = Some(pb::TemplateKey {
                set: collection,
                title: name,
            });
            let response = client
                .get_template(pb::GetTemplateRequest { key })
                .await?
                .into_inner();
            if json {
                return done(output::json(&response));
            }
            print_raw(&response.template.unwrap_or_default().content)
        }
        (Content::Stylesheets, ContentCommand::Get { collection, name }) => {
            let key = Some(pb::StylesheetKey {
                theme: collection,
                name,
            });
            let response = client
                .get_stylesheet(pb::GetStylesheetRequest { key })
                .await?
                .into_inner();
            if json {
                return done(output::json(&response));
            }
            print_raw(&response.stylesheet.unwrap_or_default().content)
        }
        (
            content,
            ContentCommand::Put {
                collection,
                name,
                file,
                expect_version,
            },
        ) => {
            let text = read_content(file)?;
            let (version, created) = match content {
                Content::Templates => {
                    let request = pb::PutTemplateRequest {
                        key: Some(pb::TemplateKey {
                            set: collection,
                            title: name.clone(),
                        }),
                        content: text,
                        expected_version: expect_version,
                    };
                    let response = client.put_template(request).await?.into_inner();
                    if json {
                        return done(output::json(&response));
                    }
                    (
                        response.template.unwrap_or_default().version,
                        response.created,
                    )
                }
                Content::Stylesheets => {
                    let request = pb::PutStylesheetRequest {
                        key: Some(pb::StylesheetKey {
                            theme: collection,
                            name: name.clone(),
                        }),
                        content: text,
                        expected_version: expect_version,
                    };
                    let response = client.put_stylesheet(request).await?.into_inner();
                    if json {
                        return done(output::json(&response));
                    }
                    (
                        response.stylesheet.unwrap_or_default().version,
                        response.created,
                    )
                }
            };
            let verb = if created { "created" } else { "updated" };
            output::outln!("{name}: {verb}, version {version}");
            Ok(ExitCode::SUCCESS)
        }
        (
            content,
            ContentCommand::Rm {
                collection,
                name,
                expect_version,
            },
        ) => {
            let version = match content {
                Content::Templates => {
                    let key = Some(pb::TemplateKey {
                        set: collection,
                        title: name.clone(),
                    });
                    let request = pb::DeleteTemplateRequest {
                        key,
                        expected_version: expect_version,
                    };
                    let response = client.delete_template(request).await?.into_inner();
                    if json {
                        return done(output::json(&response));
                    }
                    response.deleted_version
                }
                Content::Stylesheets => {
                    let key = Some(pb::StylesheetKey {
                        theme: collection,
                        name: name.clone(),
                    });
                    let request = pb::DeleteStylesheetRequest {
                        key,
                        expected_version: expect_version,
                    };
                    let response = client.delete_stylesheet(request).await?.into_inner();
                    if json {
                        return done(output::json(&response));
                    }
                    response.deleted_version
                }
            };
            output::outln!("{name}: deleted (was version {version})");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Most bytes of content read: far over what the daemon takes (it names
/// its own limit), yet `/dev/zero` given as the file cannot fill memory.
const MAX_INPUT: u64 = 64 << 20;

/// Content from a file, or from stdin. A pipe is a fine source here (the
/// user waits for their own command), so the file is not required to be
/// a regular one; only the size is bounded.
fn read_content(file: Option<PathBuf>) -> Result<String, Failure> {
    let read = |file: &Option<PathBuf>| -> std::io::Result<String> {
        let source: Box<dyn Read> = match file {
            Some(path) => Box::new(std::fs::File::open(path)?),
            None => Box::new(std::io::stdin()),
        };
        let mut text = String::new();
        source.take(MAX_INPUT + 1).read_to_string(&mut text)?;
        if text.len() as u64 > MAX_INPUT {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!("larger than {MAX_INPUT} bytes"),
            ));
        }
        Ok(text)
    };
    read(&file).map_err(|err| {
        let source = file.map_or("stdin".to_owned(), |path| path.display().to_string());
        Failure::Input(format!("cannot read {source}: {err}"))
    })
}

fn print_raw(content: &str) -> Result<ExitCode, Failure> {
    std::io::stdout().write_all(content.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn print_collections(rows: Vec<(String, u32)>) -> Result<ExitCode, Failure> {
    let mut table = vec![["NAME", "ITEMS"].map(str::to_owned)];
    table.extend(
        rows.into_iter()
            .map(|(name, count)| [name, count.to_string()]),
    );
    output::table(&table)?;
    Ok(ExitCode::SUCCESS)
}

fn print_items(rows: Vec<Row>) -> Result<ExitCode, Failure> {
    let mut table = vec![["NAME", "VERSION", "BYTES"].map(str::to_owned)];
    table.extend(
        rows.into_iter()
            .map(|row| [row.name, row.version.to_string(), row.size.to_string()]),
    );
    output::table(&table)?;
    Ok(ExitCode::SUCCESS)
}
