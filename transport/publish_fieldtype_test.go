package transport

import (
	"encoding/json"
	"testing"

	"github.com/tinysse/tinysse/engine"
)

// TestPublishWrongTypeNamesField: a well-formed JSON body with a member
// of the wrong type is refused with 400 and an error that names the
// member and the type it must have (not "malformed JSON"); nothing is
// published.
func TestPublishWrongTypeNamesField(t *testing.T) {
	t.Parallel()
	addr, eng, _ := startServer(t, engine.Config{}, Config{})
	cases := map[string]string{
		`{"topic":5}`:                    `field "topic" must be a string or a list of strings`,
		`{"data":"x","topic":["a",5]}`:   `field "topic" must be a string or a list of strings`,
		`{"data":5}`:                     `field "data" must be a string`,
		`{"id":true,"data":"x"}`:         `field "id" must be a string`,
		`{"event":[],"data":"x"}`:        `field "event" must be a string`,
		`{"data":"x","comment":{"a":1}}`: `field "comment" must be a list of strings`,
		// As in Tiny SSE, whose comment is a list: a single string is refused.
		`{"data":"x","comment":"one"}`: `field "comment" must be a list of strings`,
		// A null in a list is not a string (a null field is an absent
		// one): it was taken as "", an empty comment line, or the
		// default stream among the topics.
		`{"data":"x","comment":[null]}`:     `field "comment" must be a list of strings`,
		`{"data":"x","comment":["a",null]}`: `field "comment" must be a list of strings`,
		`{"data":"x","topic":[null]}`:       `field "topic" must be a string or a list of strings`,
		`{"data":"x","topic":["a",null]}`:   `field "topic" must be a string or a list of strings`,
	}
	for body, want := range cases {
		a := post(t, addr, "/sse", "application/json", body)
		var e struct{ Error string }
		if err := json.Unmarshal([]byte(a.Body), &e); err != nil || a.Status != 400 || e.Error != want {
			t.Errorf("%s: got %d %s, want 400 {\"error\":%q}", body, a.Status, a.Body, want)
		}
	}
	if n := eng.Stats().Publishes; n != 0 {
		t.Errorf("%d publishes after refusals only", n)
	}
}
