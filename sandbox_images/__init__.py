"""What runs inside the sandbox: the WIT world, the guest SDK and the entry glue."""
