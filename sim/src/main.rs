//! Replays one scenario with one seed and prints its event log:
//! `cargo run -p nkcluster-sim -- <scenario> <seed>` (no arguments: list scenarios).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, seed] = args.as_slice() else {
        eprintln!("usage: nkcluster-sim <scenario> <seed>\nscenarios:");
        for (n, _) in nkcluster_sim::scenarios::ALL {
            eprintln!("  {n}");
        }
        return ExitCode::from(2);
    };
    let Some((_, f)) = nkcluster_sim::scenarios::ALL
        .iter()
        .find(|(n, _)| n == name)
    else {
        eprintln!("unknown scenario {name}");
        return ExitCode::from(2);
    };
    let Ok(seed) = seed.parse::<u64>() else {
        eprintln!("seed must be an unsigned integer");
        return ExitCode::from(2);
    };
    match f(seed) {
        Ok(log) => {
            println!("{}", log.join("\n"));
            println!("scenario {name} seed {seed}: ok");
            ExitCode::SUCCESS
        }
        Err(fail) => {
            println!("{}", fail.log.join("\n"));
            println!("scenario {name} seed {seed}: FAILED: {}", fail.error);
            ExitCode::from(1)
        }
    }
}
