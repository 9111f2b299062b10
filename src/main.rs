fn main() { maand::run() }
