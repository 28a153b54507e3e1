//! `host-trainer`: train microconv networks on MNIST, reproduce the seed experiment,
//! evaluate saved parameters. This file parses the command line and dispatches; each
//! command is a module of `host_trainer::cmd`.

use std::process::ExitCode;

use clap::Parser;
use host_trainer::cmd::Command;

#[derive(Parser)]
#[command(
    name = "host-trainer",
    version,
    about = "Train microconv networks on MNIST, reproduce the seed experiment, evaluate and export weights"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn main() -> ExitCode {
    // `host-trainer ... | head`: when the reader goes away, stop quietly with the status
    // a shell gives a process killed by SIGPIPE (128 + 13), not a panic message.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info)
    }));
    match Cli::parse().command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_documented() {
        Cli::command().debug_assert();
        // Every option of every command says what it does.
        for sub in Cli::command().get_subcommands() {
            assert!(sub.get_about().is_some(), "{}", sub.get_name());
            for a in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                assert!(
                    a.get_help().is_some(),
                    "{} --{}",
                    sub.get_name(),
                    a.get_id()
                );
            }
        }
    }

    #[test]
    fn defaults_and_conflicts() {
        let c = Cli::try_parse_from(["host-trainer", "train"]).unwrap();
        let Command::Train(a) = c.command else {
            panic!("not train")
        };
        assert_eq!(
            (a.steps, a.batch, a.lr, a.checkpoint_every),
            (12_000, 64, 2e-3, 1000)
        );
        assert!(a.resume.is_none());
        for bad in [
            &["host-trainer", "train", "--steps", "5", "--epochs", "1"][..],
            &["host-trainer", "train", "--resume", "x.ckpt", "--lr", "0.1"],
            &["host-trainer", "train", "--resume", "x.ckpt", "--seed", "2"],
            &["host-trainer", "predict"],
            &["host-trainer", "board"],
            &["host-trainer", "train", "--inject-nan", "5"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
        let hooks = Cli::try_parse_from(["host-trainer", "train", "--inject-nan", "5:7"]);
        #[cfg(feature = "test-hooks")]
        {
            let Command::Train(a) = hooks.unwrap().command else {
                panic!()
            };
            assert_eq!(a.hooks.inject_nan(), Some((5, 7)));
        }
        // A build without the feature (what `cargo build --release` ships) has no hooks.
        #[cfg(not(feature = "test-hooks"))]
        assert_eq!(
            hooks.err().map(|e| e.kind()),
            Some(clap::error::ErrorKind::UnknownArgument)
        );
        let _ = Cli::try_parse_from(["host-trainer", "bench", "--child"])
            .map(|_| panic!("bench --child is not an option"));
    }
}
