package transport

import (
	"fmt"

	"github.com/tinysse/tinysse/engine"
)

// checkPatterns refuses what a subscriber may not name as a pattern (issue
// 17): a topic with a "*" must be a valid pattern (engine.ParseSubscription:
// "*" a whole segment, "**" only last, no empty segment), and one request
// names at most engine.MaxPatternsPerSubscriber wildcard patterns, since
// each is a ring every matching publish appends to and the first
// subscriber of a pattern makes the engine walk its topics. The error
// names the pattern; the caller answers 400 (500 when a hook set it).
func checkPatterns(ts []string) error {
	n := 0
	for _, t := range ts {
		if !engine.IsPattern(t) {
			continue
		}
		if _, err := engine.ParseSubscription(t); err != nil {
			return err
		}
		if n++; n > engine.MaxPatternsPerSubscriber {
			return fmt.Errorf("more than %d topic patterns", engine.MaxPatternsPerSubscriber)
		}
	}
	return nil
}

// checkSubscribeTopics is checkTopics, then checkPatterns.
func checkSubscribeTopics(ts []string) error {
	if err := checkTopics(ts); err != nil {
		return err
	}
	return checkPatterns(ts)
}
