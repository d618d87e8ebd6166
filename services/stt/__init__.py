"""Speech to text: utterance audio from the edge -> partial and final transcripts."""
