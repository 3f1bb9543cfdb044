fn main() {
    graft::util::tune_allocator();
    std::process::exit(graft::cli::main());
}
