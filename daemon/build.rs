//! `sqlx::migrate!` embeds the migrations it found when it was compiled;
//! a new migration must make it look again.

fn main() {
    println!("cargo:rerun-if-changed=store/migrations");
}
