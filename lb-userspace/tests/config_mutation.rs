//! Mutated configurations (issue 10, "Also"): the README's examples,
//! changed at random but reproducibly (lines dropped, doubled, swapped or
//! cut; numbers replaced by extremes; strings emptied or lengthened; bytes
//! flipped; keys renamed). Whatever the file, validation returns, never
//! panics, names `FILE:LINE` for every error with a line inside the file,
//! and takes less than a second.
use lbd::config::{Config, ConfigErrors, Environment, Machine};
use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    path::Path,
    time::{Duration, Instant},
};

const FILES: usize = 2000;

struct Host;
impl Environment for Host {
    fn interface_exists(&self, name: &str) -> bool {
        name == "eth0"
    }
    fn machine(&self) -> Option<Machine> {
        Some(Machine {
            memory_bytes: 8 << 30,
            cpus: 2,
        })
    }
}

/// The README's TOML examples, made into whole files.
fn seeds() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    let instance = "[instance]\nname = \"lb1\"\ninterface = \"eth0\"\n\n";
    let mut seeds = Vec::new();
    let reference = blocks
        .iter()
        .find(|b| b.starts_with("[instance]"))
        .expect("the configuration reference");
    for block in &blocks {
        if block.starts_with("[instance]") {
            seeds.push((*block).to_owned());
        } else if block.contains("[[vrrp]]") || block.contains("[bgp]") {
            seeds.push(format!("{reference}\n{block}"));
        } else {
            seeds.push(format!("{instance}{block}"));
        }
    }
    for seed in &seeds {
        if let Err(e) = Config::parse(seed, Path::new("lb.toml"), &Host) {
            panic!("a README example does not validate:\n{seed}\n{e}");
        }
    }
    assert!(seeds.len() >= 3, "{} examples", seeds.len());
    seeds
}

/// xorshift64*: reproducible without a dependency.
struct Random(u64);
impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "255",
    "256",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "-2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "1.5",
    "0.001",
    "1e308",
    "-1e308",
    "nan",
    "inf",
    "\"7\"",
    "true",
    "[]",
];
const STRINGS: &[&str] = &[
    "\"\"",
    "\"x\"",
    "\"198.18.0.999\"",
    "\"fd00::100\"",
    "\"0.0.0.0\"",
    "\"\\u0000\"",
    "\"日本\"",
    "42",
];

fn mutate(seed: &str, random: &mut Random) -> String {
    let mut lines: Vec<String> = seed.lines().map(str::to_owned).collect();
    for _ in 0..1 + random.below(3) {
        let n = lines.len().max(1);
        let i = random.below(n);
        match random.below(10) {
            0 if !lines.is_empty() => {
                lines.remove(i);
            }
            1 if !lines.is_empty() => {
                let line = lines[i].clone();
                lines.insert(i, line);
            }
            2 if !lines.is_empty() => {
                let j = random.below(n);
                lines.swap(i, j);
            }
            3 => {
                // A value replaced by an extreme.
                if let Some(line) = lines.get_mut(i) {
                    if let Some((key, _)) = line.split_once(" = ") {
                        *line = format!("{key} = {}", random.pick(NUMBERS));
                    }
                }
            }
            4 => {
                // Any number in the file (inline tables too) replaced.
                let numbers = number_spans(&lines);
                if !numbers.is_empty() {
                    let (line, range) = numbers[random.below(numbers.len())].clone();
                    lines[line].replace_range(range, random.pick(NUMBERS));
                }
            }
            5 => {
                if let Some(line) = lines.get_mut(i) {
                    if let Some((key, _)) = line.split_once(" = ") {
                        let long = format!("\"{}\"", "a".repeat(random.below(5000)));
                        let value = if random.below(3) == 0 {
                            long
                        } else {
                            random.pick(STRINGS).to_owned()
                        };
                        *line = format!("{key} = {value}");
                    }
                }
            }
            6 => {
                // A key renamed.
                if let Some(line) = lines.get_mut(i) {
                    if let Some((_, value)) = line.split_once(" = ") {
                        *line =
                            format!("{} = {value}", random.pick(&["nme", "weight", "port", "x"]));
                    }
                }
            }
            7 => {
                // A byte flipped (kept valid UTF-8).
                if let Some(line) = lines.get_mut(i) {
                    if !line.is_empty() {
                        let at = random.below(line.len());
                        if line.is_char_boundary(at) && line.is_char_boundary(at + 1) {
                            let c = random
                                .pick(&["[", "]", "\"", "=", "#", "{", "}", "\\", ",", "\n", "9"]);
                            line.replace_range(at..at + 1, c);
                        }
                    }
                }
            }
            8 => {
                // A section header duplicated or broken.
                let header = random.pick(&[
                    "[[service]]",
                    "[[service.backend]]",
                    "[instance]",
                    "[[vrrp]]",
                    "[[service",
                    "[[]]",
                ]);
                lines.insert(i.min(lines.len()), header.to_owned());
            }
            _ => {
                // The file cut short.
                lines.truncate(i);
            }
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Every run of digits (with its minus sign) outside strings: (line, range).
fn number_spans(lines: &[String]) -> Vec<(usize, std::ops::Range<usize>)> {
    let mut spans = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let bytes = line.as_bytes();
        let mut in_string = false;
        let mut at = 0;
        while at < bytes.len() {
            match bytes[at] {
                b'"' => in_string = !in_string,
                b'#' if !in_string => break,
                b'-' | b'0'..=b'9' if !in_string => {
                    let start = at;
                    at += 1;
                    while at < bytes.len() && (bytes[at].is_ascii_digit() || bytes[at] == b'.') {
                        at += 1;
                    }
                    if at > start + usize::from(bytes[start] == b'-') {
                        spans.push((index, start..at));
                    }
                    continue;
                }
                _ => {}
            }
            at += 1;
        }
    }
    spans
}

#[test]
fn mutated_configurations_never_panic_and_always_name_a_line() {
    let seeds = seeds();
    let mut random = Random(0x5eed_1ab5_0000_0010);
    let mut rejected = 0;
    for n in 0..FILES {
        let seed = &seeds[n % seeds.len()];
        let text = mutate(seed, &mut random);
        let lines = text.lines().count();
        let start = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| {
            Config::parse(&text, Path::new("lb.toml"), &Host)
        }));
        let took = start.elapsed();
        let Ok(result) = result else {
            panic!("file {n} panicked:\n{text}");
        };
        assert!(
            took < Duration::from_secs(1),
            "file {n} took {took:?}:\n{text}"
        );
        if let Err(ConfigErrors(errors)) = result {
            rejected += 1;
            assert!(!errors.is_empty(), "file {n}: an empty error list");
            for error in errors {
                let shown = error.to_string();
                assert!(
                    shown.starts_with(&format!("lb.toml:{}: ", error.line)),
                    "file {n}: {shown}"
                );
                assert!(
                    (1..=lines + 1).contains(&error.line),
                    "file {n}: line {} of {lines}: {shown}\n{text}",
                    error.line
                );
            }
        }
    }
    eprintln!("{} seeds, {rejected} of {FILES} rejected", seeds.len());
    // Most mutations break something; some are harmless (a duplicated
    // comment line).
    assert!(rejected > FILES / 2, "only {rejected} of {FILES} rejected");
}
