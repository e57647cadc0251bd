"""Rolling upgrades of a running lab's backends to another Debian release's versions (`storlab upgrade`)."""
