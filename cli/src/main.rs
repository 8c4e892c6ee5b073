//! `distzero`: see a run.
//!
//!     distzero logs DIR [--machine m0] [--node m0.n0] [--type Write] [--from 1.5] [--to 2s] [--level debug] [--json]
//!     distzero view DIR [-o FILE]
//!
//! DIR is a run's log folder (`.tmp/<test>/<mode>-<seed or run id>/`), as a
//! failing test or sweep prints it; simulated, virtual and cloud runs alike.

use clap::{Parser, Subcommand};
use distzero_cli::logs::{format_line, types_by_id, Filter};
use distzero_cli::run::{level_rank, parse_secs, read_run, MAX_LINES};
use distzero_cli::view;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "distzero",
    version,
    about = "See a distzero run: its logs merged in order, or drawn as a space-time diagram"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Merge a run's log files in order and print them, filtered.
    Logs {
        /// The run's log folder.
        dir: PathBuf,
        /// Only lines of this machine (and messages from or to it); repeatable.
        #[arg(long = "machine", short = 'm')]
        machines: Vec<String>,
        /// Only lines of this node (and messages from or to it); repeatable.
        #[arg(long = "node", short = 'n')]
        nodes: Vec<String>,
        /// Only message events of this message type; repeatable.
        #[arg(long = "type", short = 't')]
        types: Vec<String>,
        /// From this time on (seconds since the cluster started: 1.5, 1.5s, 300ms).
        #[arg(long, value_parser = parse_secs)]
        from: Option<f64>,
        /// Up to this time, included.
        #[arg(long, value_parser = parse_secs)]
        to: Option<f64>,
        /// Least severe level shown: error, warn, info, debug, trace.
        #[arg(long, value_parser = parse_level)]
        level: Option<u8>,
        /// Print JSON lines (merged, filtered) instead of the readable form.
        #[arg(long)]
        json: bool,
        /// Most lines read from the folder.
        #[arg(long, default_value_t = MAX_LINES)]
        max_lines: usize,
    },
    /// Write the run as one self-contained HTML page: a space-time diagram.
    View {
        /// The run's log folder.
        dir: PathBuf,
        /// Where to write the page (default: DIR/view.html).
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        /// Most lines read from the folder.
        #[arg(long, default_value_t = MAX_LINES)]
        max_lines: usize,
    },
}

fn parse_level(s: &str) -> Result<u8, String> {
    level_rank(s).ok_or_else(|| format!("`{s}` is not a level: error, warn, info, debug or trace"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("distzero: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Logs {
            dir,
            machines,
            nodes,
            types,
            from,
            to,
            level,
            json,
            max_lines,
        } => {
            let run = read_run(&dir, max_lines)?;
            let filter = Filter {
                machines,
                nodes,
                types,
                from,
                to,
                level,
            };
            let by_id = types_by_id(&run);
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for l in run.lines.iter().filter(|l| filter.matches(l, &by_id)) {
                let text = if json {
                    l.to_json().to_string()
                } else {
                    format_line(l, &by_id)
                };
                if writeln!(out, "{text}").is_err() {
                    return Ok(()); // the reader went away (| head)
                }
            }
            let _ = out.flush();
            Ok(())
        }
        Command::View {
            dir,
            output,
            max_lines,
        } => {
            let run = read_run(&dir, max_lines)?;
            let title = dir
                .components()
                .rev()
                .take(2)
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("/");
            let model = view::model(&run, &title);
            let page = view::html(&model);
            let path = output.unwrap_or_else(|| dir.join("view.html"));
            std::fs::write(&path, page)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            let abs = std::fs::canonicalize(&path).unwrap_or(path);
            println!(
                "{} messages, {} faults, {} operations on {} lanes",
                model["m"]["id"].as_array().map_or(0, Vec::len),
                model["faults"].as_array().map_or(0, Vec::len),
                model["ops"].as_array().map_or(0, Vec::len),
                model["lanes"].as_array().map_or(0, Vec::len)
            );
            println!("file://{}", abs.display());
            Ok(())
        }
    }
}
