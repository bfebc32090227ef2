//! Real database servers for tests and benchmarks: a private MariaDB
//! ([`mariadb`]) or PostgreSQL ([`postgres`]) server per test, in a
//! temporary directory, with synthetic MyBB 1.8 forums seeded from one set
//! of data. A crate of its own, so that each test binary or benchmark uses
//! what it needs of it without dead code. Beside them, a small file
//! system to fill ([`small_disk`]), and a headless Chromium driven over
//! WebDriver for the dashboard's tests ([`browser`]).

pub mod browser;
pub mod mariadb;
mod mybb_data;
mod mybb_root;
pub mod postgres;
pub mod process;
pub mod small_disk;
