//! `nuvol completions SHELL` and `nuvol manpage`: shell completions and
//! man pages generated from the same clap command the binary parses (the
//! agent's flags included), so they never drift from `--help`. The Debian
//! package builds its completions and pages with these.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;

/// Shells with completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// `nuvol completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// `nuvol manpage`.
#[derive(Debug, Args)]
pub struct ManpageArgs {
    /// Write nuvol.1 and one page per subcommand (nuvol-agent.1,
    /// nuvol-app-install.1, ...) into DIR (created if missing) instead of
    /// printing nuvol.1.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs, mut cmd: clap::Command) -> Result<i32> {
    use clap_complete::Shell as S;
    let shell = match args.shell {
        Shell::Bash => S::Bash,
        Shell::Zsh => S::Zsh,
        Shell::Fish => S::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "nuvol", &mut out);
    std::io::stdout().lock().write_all(&out)?;
    Ok(0)
}

pub fn manpage(args: ManpageArgs, cmd: clap::Command) -> Result<i32> {
    match args.out {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            std::io::stdout().lock().write_all(&out)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            let mut pages: Vec<String> = std::fs::read_dir(&dir)
                .with_context(|| format!("cannot list {}", dir.display()))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("nuvol") && n.ends_with(".1"))
                .collect();
            pages.sort();
            println!(
                "nuvol: wrote {} man pages into {}",
                pages.len(),
                dir.display()
            );
        }
    }
    Ok(0)
}
